"""Background work: the job queue (a table, claimed atomically), the worker that runs each job in a spawned
process (training), its progress, cancel and restart recovery, and the periodic retention purge.

Owns orchestration between the store and the job handlers (`veil.services.training`). Must not know HTTP.
"""
