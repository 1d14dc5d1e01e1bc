-- credit.lua: add money or units to one bucket, atomically, with a history entry.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A:buckets           buckets HASH
--   2 ocs:acct:{P}:A:history           LIST of balance actions (JSON)
-- ARGV: plain values (quota_engine/store/contract.py: CreditArgs):
--   1 bucket_id      bucket id
--   2 amount         amount to add (integer > 0)
--   3 limit          largest amount the bucket may hold
--                    (quota_engine.store.limits.MAX_AMOUNT)
--   4 history_entry  history entry (JSON), appended when the credit is made
-- Returns: a list (contract.py: CreditAnswer, decode_credit):
--   1 status         "ok", "no_bucket" or "overflow" (nothing written)
--   2 amount         "ok": the new amount; "no_bucket": 0; "overflow": the current
--                    amount
--
-- Only the bucket's amount changes (its reserved and every other field are kept), so
-- reservations the charging scripts make at the same time are not disturbed.

-- @include pack_bucket.lua

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return { 'no_bucket', 0 }
end
local bucket = cmsgpack.unpack(raw)
local current = tonumber(bucket['amount']) or 0
local amount = current + tonumber(ARGV[2])
if amount > tonumber(ARGV[3]) then
  return { 'overflow', current }
end
bucket['amount'] = amount
redis.call('HSET', KEYS[1], ARGV[1], pack_bucket(bucket))
redis.call('RPUSH', KEYS[2], ARGV[4])
return { 'ok', amount }
