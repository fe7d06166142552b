"""The pure domain: what a job is and how it moves.

Stages and the one ``transitions`` machine, the events and commands, the state
and its fold, the decisions, the codec and the error tree. It decides and
folds; it never waits, sleeps, reads a clock or touches a file, socket or
database (``tests/core/test_purity_and_api.py`` keeps it so). The public names
are re-exported by :mod:`clipjobs`.
"""
