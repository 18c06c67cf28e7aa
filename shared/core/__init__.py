"""Pure rules and formats: no I/O, no Azure or HTTP clients; imports only from here."""
