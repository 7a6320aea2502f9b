"""The ground every service stands on: settings, database, resources, errors, ids, events.

Nothing here knows about HTTP or the command line; services import from here, never the
other way round.
"""
