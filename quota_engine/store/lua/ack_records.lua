-- ack_records.lua: the exporter made these entries of a partition's record stream
-- durable in a segment file: acknowledge them in the export group and delete them.
--
-- One call, so an entry is never left acknowledged but kept (the stream would grow and
-- the lag count it) or deleted but pending. Deleting by id, not trimming by position,
-- never removes an entry that is not durable yet: another exporter may still hold
-- older entries of the partition.
--
-- KEYS (the partition's hash tag {P}, quota_engine/store/keys.py):
--   1 ocs:records:{P}                  STREAM of the partition's rated records
-- ARGV: plain values (quota_engine/store/contract.py: AckRecordsArgs):
--   1 group          the consumer group (quota_engine/store/record_feed.py)
--   2 entry_ids      the stream entry ids, separated by spaces (at least one)
-- Returns: a list (contract.py: AckRecordsAnswer, decode_ack_records):
--   1 acknowledged   entries acknowledged now (not those acknowledged before)
--   2 deleted        entries deleted now (not those deleted before)

local ids = {}
for id in string.gmatch(ARGV[2], '%S+') do
  ids[#ids + 1] = id
end
local acked = 0
local deleted = 0
-- unpack() of a thousand values at a time stays below Lua's stack limit
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, first, last))
  deleted = deleted + redis.call('XDEL', KEYS[1], unpack(ids, first, last))
end
return { acked, deleted }
