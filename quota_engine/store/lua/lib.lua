-- lib.lua: functions shared by the quota engine scripts.
--
-- Not a script of its own: quota_engine/store/scripts.py puts this file's text where a
-- script has the line "-- @include lib.lua", so each loaded script is one chunk and
-- these functions are its locals (Redis forbids globals in scripts).
--
-- Redis 6.2 and 7.x: Lua 5.1 with cmsgpack and cjson; nothing newer is used.
--
-- Numbers are Lua doubles: every amount, unit count and timestamp must stay below
-- 2^53 (keys.MAX_AMOUNT), where doubles are exact integers. Integer division uses
-- idiv(), which corrects the float quotient, so floor/ceil are exact too.
-- Never print a number with tostring() (it gives 14 significant digits): fmt_int().
--
-- The price formula (identical to quota_engine/charging/rating.pyx, Price.charge and
-- Price.units_for_money; tests/quota_engine/test_scripts_formula.py checks it):
--   p = {fi = first_increment, fc = first_cost, ni = next_increment, nc = next_cost}
--   charge(p, units, cont) -> billed, cost
--     units <= 0                       -> 0, 0
--     not cont and units <= fi         -> fi, fc
--     not cont: n = ceil((units - fi) / ni) -> fi + n*ni, fc + n*nc
--     cont:     n = ceil(units / ni)        -> n*ni, n*nc
--   units_for_money(p, budget, cont) -> the largest billed amount costing <= budget
--     base, base_cost = (0, 0) if cont else (fi, fc)
--     budget < base_cost -> 0;  nc == 0 -> math.huge (unlimited: callers cap it)
--     else base + floor((budget - base_cost) / nc) * ni
--
-- Cumulative rating (Price.charge_after, round_grant_after, units_for_money_after): the
-- reports of a session's rating group at one price are charged on their running total,
-- q = the units already charged in money at that price (R.q), the count starting with
-- R.cont:
--   charge_after(p, q, units, cont)  = charge(p, q + units, cont) - charge(p, q, cont)
--   grant_after(p, q, want, cont)    = billed(q + want) - q  (0 for want <= 0)
--   units_for_money_after(p, q, budget, cont)
--                                    = units_for_money(p, cost(q) + budget, cont) - q
-- so the reports cost charge(total) together, however many and however sized.

local MAX_AMOUNT = 9007199254740991 -- 2^53 - 1

local function idiv(a, b)
  -- floor(a / b) for integers 0 <= a < 2^53, 0 < b < 2^53
  local q = math.floor(a / b)
  while q > 0 and q * b > a do
    q = q - 1
  end
  while (q + 1) * b <= a do
    q = q + 1
  end
  return q
end

local function ceil_div(a, b)
  local q = idiv(a, b)
  if q * b < a then
    q = q + 1
  end
  return q
end

local function fmt_int(n)
  return string.format('%d', n)
end

local function charge(p, units, cont)
  if units <= 0 then
    return 0, 0
  end
  local base, base_cost, rest = 0, 0, units
  if not cont then
    if units <= p.fi then
      return p.fi, p.fc
    end
    base, base_cost, rest = p.fi, p.fc, units - p.fi
  end
  local n = ceil_div(rest, p.ni)
  return base + n * p.ni, base_cost + n * p.nc
end

local function units_for_money(p, budget, cont)
  local base, base_cost = 0, 0
  if not cont then
    base, base_cost = p.fi, p.fc
  end
  if budget < base_cost then
    return 0
  end
  if p.nc == 0 then
    return math.huge
  end
  return base + idiv(budget - base_cost, p.nc) * p.ni
end

local function charge_after(p, q, units, cont)
  local billed0, cost0 = charge(p, q, cont)
  local billed1, cost1 = charge(p, q + units, cont)
  return billed1 - billed0, cost1 - cost0
end

local function grant_after(p, q, want, cont)
  if want <= 0 then
    return 0
  end
  return charge(p, q + want, cont) - q
end

local function units_for_money_after(p, q, budget, cont)
  local _, spent = charge(p, q, cont)
  return math.max(0, units_for_money(p, spent + budget, cont) - q)
end

-- ------------------------------------------------------------------ buckets
--
-- The bucket format and its packer (map_header, BUCKET_FIELDS, pack_bucket):

-- @include pack_bucket.lua

local function load_buckets(key)
  local raw = redis.call('HGETALL', key)
  local list, by_id = {}, {}
  for i = 1, #raw, 2 do
    local ok, b = pcall(cmsgpack.unpack, raw[i + 1])
    if ok and type(b) == 'table' then
      b.id = raw[i]
      b.amount = tonumber(b.amount) or 0
      b.reserved = tonumber(b.reserved) or 0
      b.priority = tonumber(b.priority) or 0
      if type(b.services) ~= 'table' then
        b.services = {}
      end
      list[#list + 1] = b
      by_id[b.id] = b
    end
  end
  return { key = key, list = list, by_id = by_id, dirty = {} }
end

local function touch(B, b)
  B.dirty[b.id] = b
end

local function save_buckets(B)
  local args = {}
  for id, b in pairs(B.dirty) do
    args[#args + 1] = id
    args[#args + 1] = pack_bucket(b)
  end
  if #args > 0 then
    redis.call('HSET', B.key, unpack(args))
  end
  B.dirty = {}
end

local function main_bucket(B)
  local b = B.by_id['main']
  if not b then
    b = { id = 'main', kind = 'money', amount = 0, reserved = 0, priority = 0, services = {} }
    B.list[#B.list + 1] = b
    B.by_id['main'] = b
  end
  return b
end

local function valid_at(b, now)
  local from, to = tonumber(b.valid_from), tonumber(b.valid_to)
  if from and now < from then
    return false
  end
  if to and now >= to then
    return false
  end
  return true
end

local function lists(services, service)
  for _, s in ipairs(services) do
    if s == service then
      return true
    end
  end
  return false
end

local function bucket_before(a, b)
  if a.priority ~= b.priority then
    return a.priority < b.priority
  end
  local ta, tb = tonumber(a.valid_to) or math.huge, tonumber(b.valid_to) or math.huge
  if ta ~= tb then
    return ta < tb
  end
  return a.id < b.id
end

-- The buckets of `kind` usable now by `service` (of `unit`), in consumption order:
-- priority, then soonest valid_to (none = last), then id. Expired and not-yet-valid
-- buckets are skipped.
local function candidates(B, kind, service, unit, now)
  local found = {}
  for _, b in ipairs(B.list) do
    if b.kind == kind and valid_at(b, now) then
      local ok
      if kind == 'units' then
        ok = service ~= nil and lists(b.services, service) and (b.unit == nil or b.unit == unit)
      else
        ok = #b.services == 0 or (service ~= nil and lists(b.services, service))
      end
      if ok then
        found[#found + 1] = b
      end
    end
  end
  table.sort(found, bucket_before)
  return found
end

-- What bucket b can still give: its amount less what live sessions hold reserved on
-- it, never below 0; "main", the money bucket, goes down to -credit_limit (0 for unit
-- buckets, which have no credit).
local function free_amount(b, credit_limit)
  local free = b.amount - b.reserved
  if b.id == 'main' then
    free = free + credit_limit
  end
  if free < 0 then
    return 0
  end
  return free
end

-- What debiting `units` of service `sv` now would take: the applicable unit buckets
-- cover what they can, the rest costs money at the service's price. Returns the unit
-- buckets, the money buckets, the units taken from unit buckets, the money cost and
-- the free money (credit limit included). Shared by event debit and balance check.
local function quote(B, A, sv, units, now)
  local ulist = candidates(B, 'units', sv.sv, sv.unit, now)
  local free_units = 0
  for _, b in ipairs(ulist) do
    free_units = free_units + free_amount(b, 0)
  end
  local from_units = math.min(units, free_units)
  local _, cost = charge(sv.p, units - from_units, false)
  local mlist = candidates(B, 'money', sv.sv, nil, now)
  local free_money = 0
  for _, b in ipairs(mlist) do
    free_money = free_money + free_amount(b, A.credit)
  end
  return ulist, mlist, from_units, cost, free_money
end

local function add_to(map, key, amount)
  if amount ~= 0 then
    map[key] = (map[key] or 0) + amount
  end
end

-- Take `amount` from the free amounts of the buckets `list`, in order (free_amount;
-- credit_limit 0 for unit buckets); returns what could not be taken. Records each
-- bucket's part in `taken`.
local function take_free(B, list, amount, credit_limit, taken)
  for _, b in ipairs(list) do
    if amount <= 0 then
      break
    end
    local t = math.min(amount, free_amount(b, credit_limit))
    if t > 0 then
      b.amount = b.amount - t
      touch(B, b)
      add_to(taken, b.id, t)
      amount = amount - t
    end
  end
  return amount
end

-- Reserve `amount` of the free amounts of the buckets `list`, in order, the same way;
-- returns what could not be reserved. Appends each bucket's part to `entries`
-- ({bucket id, reserved}, a session's open reservation).
local function reserve_free(B, list, amount, credit_limit, entries)
  for _, b in ipairs(list) do
    if amount <= 0 then
      break
    end
    local t = math.min(amount, free_amount(b, credit_limit))
    if t > 0 then
      b.reserved = b.reserved + t
      touch(B, b)
      entries[#entries + 1] = { b.id, t }
      amount = amount - t
    end
  end
  return amount
end

-- ------------------------------------------------------------------ rating groups
--
-- R, one rating group of a session (see docs/data-model.md, "Sessions"):
--   k key, rg rating group, si service identifier, sv service id, unit,
--   p price {fi, fc, ni, nc, key, m = record metadata, msgpack-encoded}, zr zero-rated,
--   ur the period usage range {from, until} p's tier holds for (nil: not a tier),
--   q units charged in money at p so far (the cumulative count; see charge_after),
--   qk the key of the price q counts at (p.key), cont (the count started after the
--   first increment was paid: it is a continuation), g granted, fu final unit,
--   ru {{bucket, units}, ...} and rm {{bucket, micro}, ...}: the open reservation,
--   accumulators of the record to come: used, chg, al {bucket = units},
--   mo {bucket = micro}, t0 (start). The record's price metadata is p.m: usage is
--   always charged at p, and a change of price flushes a record first.

local function new_rg(sv, ts)
  return {
    k = sv.k, rg = sv.rg, si = sv.si, sv = sv.sv, unit = sv.unit, p = sv.p, zr = sv.zr,
    ur = sv.ur, q = 0, qk = sv.p and sv.p.key, cont = false, g = 0, fu = false,
    ru = {}, rm = {},
    used = 0, chg = 0, al = {}, mo = {}, t0 = ts,
  }
end

-- R's cumulative count at its price R.p: q and cont. When R.p is not the price q was
-- counted at (a new price: band, zone, tier or catalog; ccr.lua flushes the usage
-- charged at the old price first), the count restarts at 0, as a continuation once
-- the first increment has been paid at an earlier price.
local function count_at_price(R)
  local key = R.p and R.p.key
  if R.qk ~= key then
    R.cont = R.cont or (R.q or 0) > 0
    R.q, R.qk = 0, key
  end
  return R.q, R.cont
end

-- Take up to `amount` from the reservations `entries` ({bucket id, reserved}) and
-- release every reservation in full; returns what the reservations did not cover.
local function settle_reserved(B, entries, amount, taken)
  for _, e in ipairs(entries or {}) do
    local b = B.by_id[e[1]]
    if b then
      local t = math.min(amount, e[2])
      b.amount = b.amount - t
      b.reserved = math.max(0, b.reserved - e[2])
      touch(B, b)
      add_to(taken, b.id, t)
      amount = amount - t
    end
  end
  return amount
end

-- Commit `used` units of R at R's stored price and release what is left of its
-- reservation: unit reservations first, then free units of applicable unit buckets,
-- then money, cumulatively (charge_after(p, q, rest, cont), then q grows by rest):
-- money reservations first, then free money, then "main" below its floor (only when
-- usage exceeded the grant). Returns the cost.
local function commit(B, A, R, used, now)
  local left = used
  if R.zr then
    left = 0
  end
  left = settle_reserved(B, R.ru, left, R.al)
  R.ru = {}
  if left > 0 then
    left = take_free(B, candidates(B, 'units', R.sv, R.unit, now), left, 0, R.al)
  end
  local cost = 0
  if left > 0 then
    local q, cont = count_at_price(R)
    local _
    _, cost = charge_after(R.p, q, left, cont)
    if cost > MAX_AMOUNT then
      cost = MAX_AMOUNT
    end
    R.q = q + left
  end
  local due = cost
  due = settle_reserved(B, R.rm, due, R.mo)
  R.rm = {}
  if due > 0 then
    due = take_free(B, candidates(B, 'money', R.sv, nil, now), due, A.credit, R.mo)
  end
  if due > 0 then
    local b = main_bucket(B)
    b.amount = b.amount - due
    touch(B, b)
    add_to(R.mo, 'main', due)
  end
  R.used = R.used + used
  R.chg = R.chg + cost
  R.g = 0
  R.fu = false
  return cost
end

-- Size and reserve a new grant of `want` units for R (want > 0), on the cumulative
-- count: rounded up so that the count would end on an increment boundary
-- (grant_after(p, q, want, cont)), capped by the free units of applicable unit
-- buckets plus what the free money affords (units_for_money_after). The money part
-- costs charge_after(p, q, units, cont): the rest of an increment already paid is
-- free. Returns granted, capped.
local function reserve(B, A, R, want, now)
  local q, cont = count_at_price(R)
  local target = grant_after(R.p, q, want, cont)
  local units = candidates(B, 'units', R.sv, R.unit, now)
  local ua = target - reserve_free(B, units, target, 0, R.ru)
  local need, gm, capped = target - ua, 0, false
  if need > 0 then
    local money = candidates(B, 'money', R.sv, nil, now)
    local avail = 0
    for _, b in ipairs(money) do
      avail = avail + free_amount(b, A.credit)
    end
    local _, cost = charge_after(R.p, q, need, cont)
    if cost <= avail then
      gm = need
    else
      gm = math.min(need, units_for_money_after(R.p, q, avail, cont))
      _, cost = charge_after(R.p, q, gm, cont)
      capped = true
    end
    reserve_free(B, money, cost, A.credit, R.rm)
  end
  R.g = ua + gm
  R.fu = capped
  return R.g, capped
end

-- ------------------------------------------------------------------ records
--
-- One rated record per XADD, field "r" = msgpack map; docs/records.md lists the fields.
-- The price's metadata (price, catalog, zone, destination, band, tariff) arrives from
-- the engine already msgpack-encoded (a map, p.m); it is kept as an opaque string in
-- the session, which keeps sessions small and cheap to decode, and its pairs are
-- spliced into the record's map here.

local function map_body(blob)
  -- the pairs of an encoded map and their count (fixmap or map16)
  if type(blob) ~= 'string' or #blob == 0 then
    return '', 0
  end
  local first = string.byte(blob, 1)
  if first >= 128 and first <= 143 then
    return string.sub(blob, 2), first - 128
  end
  if first == 222 then
    return string.sub(blob, 4), string.byte(blob, 2) * 256 + string.byte(blob, 3)
  end
  return '', 0
end

-- A table packed as a msgpack map, also when empty (cmsgpack packs an empty table as
-- an array): for the maps of a record (used, allowances, money).
local function pack_map(t)
  if type(t) ~= 'table' or next(t) == nil then
    return map_header(0)
  end
  return cmsgpack.pack(t)
end

-- The units reported for the record when usage sanity cut some (R.cx: the units not
-- committed), else nil; at most 2^53 - 1.
local function capped_from(R)
  local cut = tonumber(R.cx) or 0
  if cut <= 0 then
    return nil
  end
  return math.min(R.used + cut, MAX_AMOUNT)
end

-- S.rc (the rating context of the session or the event: d destination, a APN; absent
-- or an empty table when unknown) gives the record's called and apn.
local function record_blob(S, R, cause, number, end_ts, currency)
  -- every field is present (nil packs as nil); docs/records.md
  local used = {}
  if R.unit then
    used[R.unit] = R.used
  end
  local called, apn
  if type(S.rc) == 'table' then
    called, apn = S.rc.d, S.rc.a
  end
  local body = cmsgpack.pack(
    'id', S.id .. ';' .. fmt_int(number) .. ';' .. R.k,
    'account', S.acct, 'identities', S.ids or {}, 'session', S.id, 'request', number,
    'peer', S.peer, 'context', S.ctx, 'service', R.sv, 'rating_group', R.rg,
    'service_identifier', R.si, 'unit', R.unit, 'start', R.t0, 'end', end_ts, 'used'
  ) .. pack_map(used) .. cmsgpack.pack('charged', R.chg, 'allowances') .. pack_map(R.al)
    .. cmsgpack.pack('money') .. pack_map(R.mo) .. cmsgpack.pack(
    'zero_rated', R.zr and true or false, 'cause', cause, 'currency', currency,
    'capped_from', capped_from(R), 'called', called, 'apn', apn
  )
  local meta, n = map_body(R.p and R.p.m)
  return map_header(23 + n) .. body .. meta
end

local function append_record(key, blob)
  redis.call('XADD', key, '*', 'r', blob)
end

-- Write R's accumulated usage as one record and start a new one at `ts`.
local function flush(S, R, cause, number, end_ts, currency, records_key)
  append_record(records_key, record_blob(S, R, cause, number, end_ts, currency))
  R.used, R.chg, R.al, R.mo, R.t0, R.cx = 0, 0, {}, {}, end_ts, nil
end

local function account_info(key)
  local f = redis.call('HMGET', key, 'status', 'kind', 'credit_limit', 'currency', 'plan',
    'bill_cycle_day')
  if not f[1] then
    return nil
  end
  local credit = 0
  if f[2] == 'postpaid' then
    credit = tonumber(f[3]) or 0
  end
  return { status = f[1], kind = f[2], credit = credit, currency = f[4], plan = f[5] or '',
    cycle_day = f[6] or '' }
end

-- The engine rates with a cached copy of the account's plan, bill cycle day and
-- currency (req.w) and of its period usage: each service's sv.ur is the usage range
-- {from, until} its tier price holds for (until -1: no bound), for the period usage
-- after the request's reports of that service (sv.used, summed per service; a tier
-- applies from the report that crosses its threshold). True when that copy is out of
-- date; the script then answers 'stale' having written nothing, and the engine reads
-- the account again and retries the request. The period usage read before the
-- request is left in A.pu (service -> units), for ccr.lua's split of a report at a
-- tier threshold.
local function rated_with_outdated(A, req, usage_key)
  local w = req.w
  if w and (A.plan ~= w[1] or A.cycle_day ~= w[2] or (A.currency or '') ~= w[3]) then
    return true
  end
  local pu, reported = {}, {}
  A.pu = pu
  for _, sv in ipairs(req.s or {}) do
    local used = tonumber(sv.used)
    if used and used > 0 and sv.sv then
      reported[sv.sv] = (reported[sv.sv] or 0) + used
    end
  end
  for _, sv in ipairs(req.s or {}) do
    local range = sv.ur
    if range then
      local before = pu[sv.sv]
      if before == nil then
        before = tonumber(redis.call('HGET', usage_key, sv.sv)) or 0
        pu[sv.sv] = before
      end
      local used = before + (reported[sv.sv] or 0)
      if used < range[1] or (range[2] >= 0 and used >= range[2]) then
        return true
      end
    end
  end
  return false
end

-- ------------------------------------------------------------------ opening checks
--
-- What ccr.lua, event.lua and refund.lua check before they write anything, in this
-- order (ccr.lua checks the session's request order between the two):
--   stored_answer(idem_key): the answer stored for (session, n), returned as is to a
--     retransmission, or false;
--   open_account(account_key, req, usage_key, inactive_ok): the account (A) or why
--     the request is refused: 'unknown_subscriber' (no account); 'stale' (when
--     usage_key is given: rated with an outdated copy, rated_with_outdated above);
--     'service_denied' (not active, unless inactive_ok).
--   open_debit(idem_key, account_key, req, usage_key, inactive_ok): both for event.lua
--     and refund.lua, whose refusals answer alike; the account, or the packed answer
--     to return at once (nil, answer).
-- remember_answer stores the answer of a request that went through under the same
-- key for ttl seconds, and returns it packed.

local function stored_answer(idem_key)
  return redis.call('GET', idem_key)
end

local function open_account(account_key, req, usage_key, inactive_ok)
  local A = account_info(account_key)
  if not A then
    return nil, 'unknown_subscriber'
  end
  if usage_key and rated_with_outdated(A, req, usage_key) then
    return nil, 'stale'
  end
  if A.status ~= 'active' and not inactive_ok then
    return nil, 'service_denied'
  end
  return A, nil
end

local function open_debit(idem_key, account_key, req, usage_key, inactive_ok)
  local stored = stored_answer(idem_key)
  if stored then
    return nil, stored
  end
  local A, refused = open_account(account_key, req, usage_key, inactive_ok)
  if refused then
    return nil, cmsgpack.pack({ o = refused, n = req.n, c = 0, s = {} })
  end
  return A, nil
end

local function remember_answer(idem_key, answer, ttl)
  local blob = cmsgpack.pack(answer)
  redis.call('SET', idem_key, blob, 'EX', ttl)
  return blob
end
