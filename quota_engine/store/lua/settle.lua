-- settle.lua: settle one session whose deadline has passed (its CCR-T never came).
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH (currency)
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--   3 ocs:acct:{P}:A:sess:<session-id>  session STRING (msgpack)
--   4 ocs:acct:{P}:A:sessions          ZSET session id -> deadline
--   5 ocs:records:{P}                  STREAM of rated records
--   6 ocs:open:{P}                     HASH the partition's open-session counters (open_counts.lua)
--
-- ARGV[1]  session id (quota_engine/store/contract.py: SettleArgs)
-- ARGV[2]  now (Unix seconds)
--
-- Returns a msgpack map (contract.py: SettleAnswer, decode_settle):
--   o       "settled", "gone" or "alive"
--   records  the count of records appended ("settled")
--   dl      the session's deadline ("alive")
--
-- "gone": there is no such session (already terminated or settled); the ZSET entry is
-- removed. "alive": its deadline is later than now (a CCR arrived meanwhile): nothing
-- is touched. "settled": the usage committed by the session's reports stays charged
-- (nothing more was reported, nothing more is charged), every open reservation is
-- released, one record per rating group is appended (cause "expired", request number
-- = the session's last + 1, as if it were the CCR-T that never came; end = the time of
-- the last request; called and apn from the session's rating context S.rc, as ccr.lua's
-- records), the session is deleted and its part of the partition's open-session
-- counters taken off (open_counts.lua). Running it twice is harmless, so any
-- number of sweepers may race on one session.

-- @include lib.lua
-- @include open_counts.lua

local K_ACCT, K_BUCKETS, K_SESS, K_SESSIONS, K_RECORDS, K_OPEN =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local sid, now = ARGV[1], tonumber(ARGV[2])

local raw = redis.call('GET', K_SESS)
if not raw then
  redis.call('ZREM', K_SESSIONS, sid)
  return cmsgpack.pack({ o = 'gone' })
end
local S = cmsgpack.unpack(raw)
if (tonumber(S.dl) or 0) > now then
  return cmsgpack.pack({ o = 'alive', dl = S.dl })
end

local currency = redis.call('HGET', K_ACCT, 'currency') or nil
if currency == false then
  currency = nil
end
local A = { credit = 0, currency = currency }
local B = load_buckets(K_BUCKETS)
local keys = {}
for k, _ in pairs(S.rgs or {}) do
  keys[#keys + 1] = k
end
table.sort(keys)
local counted = nil
if S.cm == 1 then
  counted = open_counts(S) -- before commit() empties the reservations
end
local end_ts = S.t or S.t0
for _, k in ipairs(keys) do
  local R = S.rgs[k]
  commit(B, A, R, 0, now)
  flush(S, R, 'expired', S.n + 1, end_ts, currency, K_RECORDS)
end
save_buckets(B)
redis.call('DEL', K_SESS)
redis.call('ZREM', K_SESSIONS, sid)
count_open(K_OPEN, counted, nil)
return cmsgpack.pack({ o = 'settled', records = #keys })
