"""The app's entry points besides the triggers: the HTTP API as plain functions, the
console's pages, sign-in, the command line and the local queue worker."""
