-- balance.lua: CCR-Event with Requested-Action CHECK_BALANCE. Read-only.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--
-- ARGV[1], a msgpack map (quota_engine/store/contract.py: BalanceArgs, EventService):
--   now     the request's rating time (Unix s): the buckets valid then count
--   s       the services, a list of maps:
--     k       key: rating group, "si<n>" or "-"
--     rg      Rating-Group
--     si      Service-Identifier
--     sv      service id (catalog)
--     unit    "octets", "seconds" or "events"
--     units   units asked (> 0)
--     st      preset outcome
--     p       price, a map:
--       fi      first increment (units)
--       fc      first cost (micro-units)
--       ni      next increment (units)
--       nc      next cost (micro-units)
--       key     changes when the price does (unused here)
--       m       the record's price metadata (unused here)
--     zr      zero-rated (with p)
--
-- Returns a msgpack map (contract.py: ChargeAnswer, decode_balance):
--   o       "ok", "insufficient_balance" (some service cannot be afforded),
--           "unknown_subscriber" or "service_denied" (account not active)
--   bal     free money now: the sum over valid money buckets that apply to every
--           service, "main" with the postpaid credit limit
--   s       one map per service of ARGV's, in their order:
--     rg      Rating-Group
--     si      Service-Identifier
--     o       "ok", "insufficient_balance", "not_applicable" or the preset outcome
--     u       unit
--     g       units asked
--     c       their price
--
-- Services are checked one after the other as if each were debited (the same rule as
-- event.lua: free units of unit buckets first, then charge(p, rest, false) in money),
-- so two services cannot both count the same money. Nothing is written.

-- @include lib.lua

local req = cmsgpack.unpack(ARGV[1])
local K_ACCT, K_BUCKETS = KEYS[1], KEYS[2]

local A, refused = open_account(K_ACCT, req, nil, false)
if refused then
  return cmsgpack.pack({ o = refused, bal = 0, s = {} })
end

local now = req.now
local B = load_buckets(K_BUCKETS)
local bal = 0
for _, b in ipairs(candidates(B, 'money', nil, nil, now)) do
  bal = bal + free_amount(b, A.credit)
end

local o = 'ok'
local out = {}
for _, sv in ipairs(req.s or {}) do
  local res = { rg = sv.rg, si = sv.si, u = sv.unit, o = 'ok', g = 0, c = 0 }
  local units = tonumber(sv.units) or 0
  if sv.st then
    res.o = sv.st
  elseif sv.zr then
    res.o = 'not_applicable'
  elseif sv.p and units > 0 then
    local ulist, mlist, from_units, cost, free_money = quote(B, A, sv, units, now)
    res.g, res.c = units, cost
    if cost > free_money then
      res.o = 'insufficient_balance'
      o = 'insufficient_balance'
    else
      -- as if debited, in memory only
      take_free(B, ulist, from_units, 0, {})
      take_free(B, mlist, cost, A.credit, {})
    end
  end
  out[#out + 1] = res
end
return cmsgpack.pack({ o = o, bal = bal, s = out })
