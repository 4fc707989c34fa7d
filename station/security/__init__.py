"""Who may do what on the station, and the record of it: users and roles, the hash-chained audit
log, the production lock that SPC or a golden-unit check sets and only an engineer lifts, and the
approval of a limits file's exact content for production."""
