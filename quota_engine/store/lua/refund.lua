-- refund.lua: one CCR-Event with Requested-Action REFUND_ACCOUNT: credit money back to
-- the account.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--   3 ocs:acct:{P}:A:idem:<session-id>:<n>  stored result STRING
--   4 ocs:records:{P}                  STREAM of rated records
--   5 ocs:acct:{P}:A:history           LIST of balance actions (JSON, oldest first)
--
-- ARGV[1], a msgpack map (quota_engine/store/contract.py: RefundArgs, EventService):
--   sid     session id
--   acct    account id
--   n       CC-Request-Number
--   ts      request time (Unix s)
--   now     server time (Unix s)
--   ttl     seconds the result is kept for retransmissions (KEYS[3])
--   peer    Origin-Host of the client
--   ctx     Service-Context-Id
--   ids     the subscriber's identities (list)
--   rc      the rating context of the request, for its records' called and apn (absent
--           or empty: none), a map:
--     d       destination (called party, SMS recipient)
--     v       visited MCC-MNC
--     a       APN
--   s       the services, a list of maps:
--     k       key: rating group, "si<n>" or "-"
--     rg      Rating-Group
--     si      Service-Identifier
--     sv      service id (catalog)
--     unit    "octets", "seconds" or "events"
--     units   units refunded (for the record)
--     st      preset outcome
--     p       price, for the record's metadata, a map:
--       fi      first increment (units)
--       fc      first cost (micro-units)
--       ni      next increment (units)
--       nc      next cost (micro-units)
--       key     changes when the price does
--       m       the record's price metadata (msgpack map, kept opaque)
--     zr      zero-rated (with p; for the record)
--     amount  micro-units to credit (>= 0)
--
-- Returns a msgpack map (contract.py: ChargeAnswer, decode_debit):
--   o       "ok" or "unknown_subscriber" (a refund is accepted whatever the status)
--   n       CC-Request-Number
--   c       minus the total money credited
--   s       one map per service of ARGV's, in their order:
--     rg      Rating-Group
--     si      Service-Identifier
--     o       "ok" or the preset outcome
--     u       unit
--     g       units refunded
--     c       minus the money credited
--
-- Money goes to "main" (created if missing); a service with a preset outcome gets
-- nothing. Each credited service gets one record (cause "refund", charged = -amount,
-- used = units) and one history entry (RPUSH, like the accounts' credits)
-- {"time": now, "action": "refund", "bucket": "main", "amount": micro-units,
-- "units": 0, "currency": .., "reason": "refund", "session": .., "request": n}.
-- The result is stored under KEYS[3] for ttl seconds: a retransmission credits once.

-- @include lib.lua

local req = cmsgpack.unpack(ARGV[1])
local K_ACCT, K_BUCKETS, K_IDEM, K_RECORDS, K_HISTORY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local A, answer = open_debit(K_IDEM, K_ACCT, req, nil, true)
if answer then
  return answer
end

local function json_str(v)
  if v == nil then
    return 'null'
  end
  return cjson.encode(v)
end

local ts = req.ts
local B = load_buckets(K_BUCKETS)
local S = {
  id = req.sid, acct = req.acct, peer = req.peer, ctx = req.ctx, ids = req.ids, rc = req.rc,
}
local out, total = {}, 0
for _, sv in ipairs(req.s or {}) do
  local res = { rg = sv.rg, si = sv.si, u = sv.unit, o = 'ok', g = 0, c = 0 }
  local units = tonumber(sv.units) or 0
  local amount = tonumber(sv.amount) or 0
  local R = new_rg(sv, ts)
  if sv.st then
    res.o = sv.st
  else
    local b = main_bucket(B)
    b.amount = b.amount + amount
    touch(B, b)
    add_to(R.mo, 'main', -amount)
    R.chg = -amount
    R.used = units
    res.g, res.c = units, -amount
    total = total + amount
    append_record(K_RECORDS, record_blob(S, R, 'refund', req.n, ts, A.currency))
    redis.call('RPUSH', K_HISTORY, '{"time":' .. fmt_int(req.now)
      .. ',"action":"refund","bucket":"main","amount":' .. fmt_int(amount)
      .. ',"units":0,"currency":' .. json_str(A.currency)
      .. ',"reason":"refund","session":' .. json_str(req.sid) .. ',"request":' .. fmt_int(req.n) .. '}')
  end
  out[#out + 1] = res
end
save_buckets(B)

return remember_answer(K_IDEM, { o = 'ok', n = req.n, c = -total, s = out }, req.ttl)
