"""The prepare stage and everything about events: the schema, reading and validation, the
fitted encoders, the customer split, labels built from events, and the memory-mapped sequence
store (`prepare.PreparedData`) that training and embedding read; `synthetic` generates the
built-in customers."""
