"""Connecting a Snapchat account (OAuth): from the terminal and from the console."""
