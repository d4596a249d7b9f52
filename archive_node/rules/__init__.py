"""The archive's rules as pure functions: who may do what, what a query means, what a retrieve
sends, what a commitment report says. No I/O, no pynetdicom, no database."""
