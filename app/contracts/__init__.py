"""Typed contracts shared by every layer, with no torch and no ORM: enums and bounds."""
