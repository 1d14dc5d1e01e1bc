-- balance_action.lua: one top-up or adjustment of a bucket, once per idempotency key.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH (status, kind, credit_limit, currency)
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--   3 ocs:acct:{P}:A:history           LIST of balance actions (JSON)
--   4 ocs:acct:{P}:A:topup:<key>       STRING result stored under the idempotency key
-- ARGV: plain values (quota_engine/store/contract.py: BalanceActionArgs):
--   1 bucket_id      bucket id
--   2 amount         signed amount (integer, non-zero)
--   3 fingerprint    request fingerprint (hex): a replay under the same key must
--                    carry the same one
--   4 create         msgpack bucket to create when missing ('' = none; amount 0,
--                    reserved 0)
--   5 unit           unit the caller expects ('' = any; the account currency for
--                    money)
--   6 entry_head     history entry JSON without its closing brace
--   7 limit          largest amount a bucket may hold
--                    (quota_engine.store.limits.MAX_AMOUNT)
--   8 ttl            TTL of the idempotency key in seconds
-- Returns: a list (contract.py: BalanceActionAnswer, decode_balance_action):
--   1 status         "replay" (nothing else happens), "no_account", "closed",
--                    "no_bucket", "unit_mismatch", "overflow", "below" or "ok";
--                    every status but "ok" writes nothing
--   2 payload        "replay": the stored "<fingerprint>\n<entry>"; "unit_mismatch":
--                    "<kind> <unit>" of the bucket; "overflow": the current amount;
--                    "below": the most that can be taken away; "ok": the history
--                    entry, completed with unit, resulting_amount and created_bucket;
--                    else ''
--
-- Only the bucket's amount changes (reserved and every other field are kept). Taking
-- away stops at what live sessions hold reserved; for a postpaid account's main money
-- bucket, at reserved minus the credit limit.

-- @include pack_bucket.lua

local stored = redis.call('GET', KEYS[4])
if stored then
  return { 'replay', stored }
end
local A = redis.call('HMGET', KEYS[1], 'status', 'kind', 'credit_limit', 'currency')
if not A[1] then
  return { 'no_account', '' }
end
if A[1] == 'closed' then
  return { 'closed', '' }
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local bucket, created
if raw then
  bucket, created = cmsgpack.unpack(raw), false
  if ARGV[4] ~= '' then
    local want = cmsgpack.unpack(ARGV[4])
    if want['kind'] ~= bucket['kind'] or want['unit'] ~= bucket['unit'] then
      return { 'unit_mismatch', tostring(bucket['kind']) .. ' ' .. tostring(bucket['unit']) }
    end
  end
else
  if ARGV[4] == '' then
    return { 'no_bucket', '' }
  end
  bucket, created = cmsgpack.unpack(ARGV[4]), true
end
local unit = bucket['unit']
if bucket['kind'] == 'money' then
  unit = A[4]
end
if ARGV[5] ~= '' and ARGV[5] ~= unit then
  return { 'unit_mismatch', tostring(bucket['kind']) .. ' ' .. tostring(unit) }
end
local current = tonumber(bucket['amount']) or 0
local reserved = tonumber(bucket['reserved']) or 0
local delta = tonumber(ARGV[2])
local amount = current + delta
if amount > tonumber(ARGV[7]) then
  return { 'overflow', string.format('%d', current) }
end
if delta < 0 then
  local floor = reserved
  if bucket['id'] == 'main' and bucket['kind'] == 'money' and A[2] == 'postpaid' then
    floor = reserved - (tonumber(A[3]) or 0)
  end
  if amount < floor then
    local most = current - floor
    if most < 0 then
      most = 0
    end
    return { 'below', string.format('%d', most) }
  end
end
bucket['amount'] = amount
redis.call('HSET', KEYS[2], ARGV[1], pack_bucket(bucket))
local entry = ARGV[6] .. ',"unit":' .. cjson.encode(unit or cjson.null)
  .. ',"resulting_amount":' .. string.format('%d', amount)
  .. ',"created_bucket":' .. (created and 'true' or 'false') .. '}'
redis.call('RPUSH', KEYS[3], entry)
redis.call('SET', KEYS[4], ARGV[3] .. '\n' .. entry, 'EX', tonumber(ARGV[8]))
return { 'ok', entry }
