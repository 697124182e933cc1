"""The cockpit as a web page: textual-serve's server, with reaped sessions and a session cap."""
