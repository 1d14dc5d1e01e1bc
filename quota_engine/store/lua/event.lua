-- event.lua: one CCR-Event with Requested-Action DIRECT_DEBITING (SMS and other
-- one-off services): debit the units of every service now, all or nothing.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--   3 ocs:acct:{P}:A:idem:<session-id>:<n>  stored result STRING
--   4 ocs:records:{P}                  STREAM of rated records
--   5 ocs:acct:{P}:A:usage:<period>    HASH service id -> units used in the bill period
--
-- ARGV[1], a msgpack map (quota_engine/store/contract.py: EventArgs, EventService):
--   sid     session id
--   acct    account id
--   n       CC-Request-Number
--   ts      rating time (Unix s): Event-Timestamp within the tolerance of server
--           time, else server time; bucket validity and the records' times
--   now     server time (Unix s; rates nothing)
--   ttl     seconds the result is kept for retransmissions (KEYS[3])
--   uttl    seconds the usage hash lives after its last write (KEYS[5])
--   peer    Origin-Host of the client
--   ctx     Service-Context-Id
--   ids     the subscriber's identities (list)
--   rc      the rating context of the request, for its records' called and apn (absent
--           or empty: none), a map:
--     d       destination (called party, SMS recipient)
--     v       visited MCC-MNC
--     a       APN
--   w       [plan, bill cycle day, currency] rated with (see ccr.lua: o = "stale")
--   s       the services, a list of maps:
--     k       key: rating group, "si<n>" or "-"
--     rg      Rating-Group
--     si      Service-Identifier
--     sv      service id (catalog)
--     unit    "octets", "seconds" or "events"
--     units   units to debit (> 0)
--     st      preset outcome
--     p       price, a map:
--       fi      first increment (units)
--       fc      first cost (micro-units)
--       ni      next increment (units)
--       nc      next cost (micro-units)
--       key     changes when the price does
--       m       the record's price metadata (msgpack map, kept opaque)
--     zr      zero-rated (with p)
--     ur      [from, until] usage range a tier price holds for (with p)
--
-- Returns a msgpack map (contract.py: ChargeAnswer, decode_debit):
--   o       "ok", "unknown_subscriber", "service_denied" or "stale"
--   n       CC-Request-Number
--   c       total cost (micro-units)
--   s       one map per service of ARGV's, in their order:
--     rg      Rating-Group
--     si      Service-Identifier
--     o       "ok", "credit_limit_reached", "not_applicable" or the preset outcome
--     u       unit
--     g       units debited
--     c       their cost
--
-- Each service's units are taken from the free units of applicable unit buckets first
-- (priority, then soonest valid_to); the rest is charged charge(p, rest, false) in
-- money, from the free money of applicable money buckets in the same order (postpaid
-- "main" down to -credit_limit). If any service cannot be paid in full, nothing at all
-- is written (no debit, no record, no stored result) and that service answers
-- credit_limit_reached. Otherwise one record per service (cause "event", id
-- "<session>;<n>;<key>") and the result is stored under KEYS[3] for ttl seconds, so a
-- retransmission gets the same answer and is debited once.

-- @include lib.lua

local req = cmsgpack.unpack(ARGV[1])
local K_ACCT, K_BUCKETS, K_IDEM, K_RECORDS, K_USAGE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local A, answer = open_debit(K_IDEM, K_ACCT, req, K_USAGE, false)
if answer then
  return answer
end

-- one clock: ts is the request's rating time, which decides bucket validity as it
-- decided the price's band and the bill period (quota_engine/charging/rating_clock.py)
local ts = req.ts
local B = load_buckets(K_BUCKETS)
local S = {
  id = req.sid, acct = req.acct, peer = req.peer, ctx = req.ctx, ids = req.ids, rc = req.rc,
}
local out, records, refused, total = {}, {}, false, 0

for _, sv in ipairs(req.s or {}) do
  local res = { rg = sv.rg, si = sv.si, u = sv.unit, o = 'ok', g = 0, c = 0 }
  local units = tonumber(sv.units) or 0
  if sv.st then
    res.o = sv.st
  elseif sv.p and units > 0 then
    local R = new_rg(sv, ts)
    local ok = true
    if not sv.zr then
      -- affordability first, on the free amounts: unit buckets, then money
      local ulist, mlist, from_units, cost, free_money = quote(B, A, sv, units, ts)
      if cost > free_money then
        ok = false
      else
        take_free(B, ulist, from_units, 0, R.al)
        take_free(B, mlist, cost, A.credit, R.mo)
        R.chg = cost
      end
    end
    if ok then
      R.used = units
      res.g, res.c = units, R.chg
      total = total + R.chg
      if sv.zr then
        res.o = 'not_applicable'
      end
      records[#records + 1] = R
    else
      res.o = 'credit_limit_reached'
      refused = true
    end
  end
  out[#out + 1] = res
end

if refused then
  for _, res in ipairs(out) do
    res.g, res.c = 0, 0
  end
  return cmsgpack.pack({ o = 'ok', n = req.n, c = 0, s = out })
end

save_buckets(B)
local any_usage = false
for _, R in ipairs(records) do
  append_record(K_RECORDS, record_blob(S, R, 'event', req.n, ts, A.currency))
  if R.sv and R.used > 0 then
    redis.call('HINCRBY', K_USAGE, R.sv, R.used)
    any_usage = true
  end
end
if any_usage and req.uttl then
  redis.call('EXPIRE', K_USAGE, req.uttl)
end
return remember_answer(K_IDEM, { o = 'ok', n = req.n, c = total, s = out }, req.ttl)
