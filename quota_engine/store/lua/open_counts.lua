-- open_counts.lua: the open-session counters of a partition (ocs:open:{P}, a HASH),
-- kept by ccr.lua and settle.lua in the same atomic call that changes a session, so
-- that sampling the open sessions and their reservations is one HGETALL per partition
-- (quota_engine/store/open_counts.py), never a walk over the sessions.
--
-- Not a script of its own: included after lib.lua (it uses fmt_int).
--
-- Fields, for each service class C of OPEN_SERVICES ("data", "voice", "sms", "other"):
--   C:sessions   open sessions whose Service-Context-Id is of class C
--   C:money      micro-units reserved by their open grants (the rm entries)
--   C:<unit>     units granted and not yet reported (R.g), unit octets, seconds or events
-- All integers (HINCRBY); a field at 0 stays.
--
-- A session counts once it carries S.cm = 1, which the first write by this version
-- sets: a script subtracts a session's contribution only if it carries the mark, so
-- sessions opened before the counters existed are counted from their next request on
-- and never subtracted without having been added.

local OPEN_SERVICES = {
  ['32251@3gpp.org'] = 'data',
  ['32260@3gpp.org'] = 'voice',
  ['32275@3gpp.org'] = 'voice',
  ['32274@3gpp.org'] = 'sms',
}
local OPEN_UNITS = { octets = true, seconds = true, events = true }

-- What the session S adds to the counters: field -> amount.
local function open_counts(S)
  local ctx = S.ctx
  local class = 'other'
  if type(ctx) == 'string' then
    class = OPEN_SERVICES[string.lower(ctx)] or 'other'
  end
  local c = { [class .. ':sessions'] = 1 }
  local money = 0
  for _, R in pairs(S.rgs or {}) do
    if type(R) == 'table' then
      for _, e in ipairs(R.rm or {}) do
        money = money + (tonumber(e[2]) or 0)
      end
      local g = tonumber(R.g) or 0
      if g > 0 and OPEN_UNITS[R.unit] then
        local f = class .. ':' .. R.unit
        c[f] = (c[f] or 0) + g
      end
    end
  end
  if money > 0 then
    c[class .. ':money'] = money
  end
  return c
end

-- Move the counters of `key` from `before` to `after` (open_counts tables, or nil
-- for no contribution): one HINCRBY per field that changed.
local function count_open(key, before, after)
  local delta = {}
  for f, v in pairs(before or {}) do
    delta[f] = -v
  end
  for f, v in pairs(after or {}) do
    delta[f] = (delta[f] or 0) + v
  end
  for f, d in pairs(delta) do
    if d ~= 0 then
      redis.call('HINCRBY', key, f, fmt_int(d))
    end
  end
end
