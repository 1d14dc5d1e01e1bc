-- export_lease.lua: renew or give up an exporter's lease on a partition, only while
-- that exporter holds it (a lease taken over by another is left alone).
--
-- KEYS (the partition's hash tag {P}, quota_engine/store/keys.py):
--   1 ocs:export:lease:{P}             STRING the owner's name
-- ARGV: plain values (quota_engine/store/contract.py: ExportLeaseArgs):
--   1 owner          the exporter's name (<host>:<pid>)
--   2 ttl_ms         renew for this many milliseconds; 0: release
-- Returns: an integer (contract.py: ExportLeaseAnswer, decode_export_lease):
--   held             1 when the caller held the lease (renewed or released), else 0

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
return 1
