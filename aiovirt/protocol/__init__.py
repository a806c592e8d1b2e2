"""Sans-IO codecs shared by the clients and the simulated node: no sockets, no asyncio."""
