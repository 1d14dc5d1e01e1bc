-- put_bucket.lua: create one bucket of an account, or replace its definition while
-- keeping what live sessions hold reserved on it.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH (must exist)
--   2 ocs:acct:{P}:A:buckets           buckets HASH
-- ARGV: plain values (quota_engine/store/contract.py: PutBucketArgs):
--   1 bucket_id      bucket id
--   2 packed_bucket  msgpack bucket (pack_bucket.lua form; reserved 0)
--   3 replace        "1": replace an existing bucket; anything else: keep it
-- Returns: a list (contract.py: PutBucketAnswer, decode_put_bucket):
--   1 status         "created", "kept" (the bucket exists and ARGV[3] is not "1"),
--                    "replaced", "no_account", "unit_change" (kind or unit would
--                    change while units are reserved) or "below_reserved" (the new
--                    amount is below what is reserved)
--   2 reserved       the units reserved on the stored bucket (0 when none)
--
-- Only this bucket's field is written; a replaced bucket keeps the stored reserved.
-- Amounts are integers below 2^53 (quota_engine.store.limits.MAX_AMOUNT).

-- @include pack_bucket.lua

if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'no_account', 0 }
end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return { 'created', 0 }
end
if ARGV[3] ~= '1' then
  return { 'kept', 0 }
end
local cur = cmsgpack.unpack(old)
local new = cmsgpack.unpack(ARGV[2])
local reserved = tonumber(cur['reserved']) or 0
if reserved == 0 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return { 'replaced', 0 }
end
if cur['kind'] ~= new['kind'] or cur['unit'] ~= new['unit'] then
  return { 'unit_change', reserved }
end
if new['amount'] < reserved then
  return { 'below_reserved', reserved }
end
new['reserved'] = reserved
redis.call('HSET', KEYS[2], ARGV[1], pack_bucket(new))
return { 'replaced', reserved }
