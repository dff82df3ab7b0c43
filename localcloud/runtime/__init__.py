"""The local cloud process: its server, how it is started, found and configured."""
