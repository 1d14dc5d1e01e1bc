-- open_counts.lua: the open-session counters of a partition (ocs:open:{P}, a HASH),
-- kept by ccr.lua and settle.lua in the same atomic call that changes a session, so
-- that sampling the open sessions and their reservations is one HMGET per partition
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

-- Everything here is a function, not a table: a script's top level runs on every
-- call, and building tables and strings there cost ccr.lua 2 to 3 us per CCR.

-- The service class of a Service-Context-Id (its lower-case form, else as it is).
local function open_class(ctx)
  if type(ctx) ~= 'string' then
    return 'other'
  end
  for _ = 1, 2 do
    if ctx == '32251@3gpp.org' then return 'data' end
    if ctx == '32260@3gpp.org' then return 'voice' end
    if ctx == '32275@3gpp.org' then return 'voice' end
    if ctx == '32274@3gpp.org' then return 'sms' end
    ctx = string.lower(ctx)
  end
  return 'other'
end

-- The slot of a unit in an open_counts entry (below), nil for another unit.
local function open_unit_slot(unit)
  if unit == 'octets' then return 4 end
  if unit == 'seconds' then return 5 end
  if unit == 'events' then return 6 end
  return nil
end

-- The field of slot i (2 to 6) of an entry of class `class`.
local function open_field(class, i)
  if i == 2 then return class .. ':sessions' end
  if i == 3 then return class .. ':money' end
  if i == 4 then return class .. ':octets' end
  if i == 5 then return class .. ':seconds' end
  return class .. ':events'
end

-- What the session S adds to the counters: { class, sessions (1), money, octets,
-- seconds, events }.
local function open_counts(S)
  local c = { open_class(S.ctx), 1, 0, 0, 0, 0 }
  for _, R in pairs(S.rgs or {}) do
    if type(R) == 'table' then
      for _, e in ipairs(R.rm or {}) do
        c[3] = c[3] + (tonumber(e[2]) or 0)
      end
      local g, slot = tonumber(R.g) or 0, open_unit_slot(R.unit)
      if g > 0 and slot then
        c[slot] = c[slot] + g
      end
    end
  end
  return c
end

-- Add sign * entry to the counters of `key` (one HINCRBY per slot not 0).
local function add_open(key, entry, sign)
  for i = 2, 6 do
    if entry[i] ~= 0 then
      redis.call('HINCRBY', key, open_field(entry[1], i), fmt_int(sign * entry[i]))
    end
  end
end

-- Move the counters of `key` from `before` to `after` (open_counts entries, or nil
-- for no contribution): one HINCRBY per field that changed.
local function count_open(key, before, after)
  if before and after and before[1] == after[1] then
    for i = 2, 6 do
      local d = after[i] - before[i]
      if d ~= 0 then
        redis.call('HINCRBY', key, open_field(after[1], i), fmt_int(d))
      end
    end
    return
  end
  if before then
    add_open(key, before, -1)
  end
  if after then
    add_open(key, after, 1)
  end
end
