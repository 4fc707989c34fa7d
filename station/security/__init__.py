"""Who may do what on the station, and the record of it: users and roles, the hash-chained audit
log, and the production lock that SPC sets and only an engineer lifts."""
