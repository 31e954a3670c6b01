//! Rich notebook display: rendered charts, tables and the kernel wire format.
