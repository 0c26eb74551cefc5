"""Typed contracts shared by every layer, with no torch and no ORM: enums and bounds, the
network configurations, a version's signature and config, a table's encoding, a dataset's
profile, each job kind's result. Stored as JSON columns through ``app.core.db.PydanticJSON``."""
