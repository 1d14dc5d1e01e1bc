"""Everything that knows Redis: the key schema, the Lua scripts and their loader,
RedisLink (the hot path's connection), record streams and the catalog versions.

No module outside this package names a Redis key."""
