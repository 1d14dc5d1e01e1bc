-- pack_bucket.lua: pack_bucket(b), the one way a script writes a bucket back.
--
-- Not a script of its own: an include ("-- @include pack_bucket.lua"), used by lib.lua
-- (so by every charging script) and by the account scripts that change a bucket
-- (put_bucket.lua, credit.lua, balance_action.lua). It defines the locals
-- map_header(count), BUCKET_FIELDS and pack_bucket(b).
--
-- A bucket (HASH ocs:acct:{P}:A:buckets, field = bucket id) is a msgpack map:
-- id, kind ("money"|"units"), unit, amount (balance including reserved), reserved,
-- priority (lower first), valid_from, valid_to (Unix s or nil; valid_to exclusive),
-- services (list of service ids). Money buckets with no services apply to every
-- service; unit buckets apply to the services they list (and only for their unit).
-- "main" is the account's money bucket; a postpaid account may take it down to
-- -credit_limit. quota_engine/accounts/model.py (Bucket.pack) writes the same form.

local function map_header(count)
  if count < 16 then
    return string.char(128 + count)
  end
  return '\222' .. string.char(math.floor(count / 256), count % 256)
end

local BUCKET_FIELDS = {
  id = true, kind = true, unit = true, amount = true, reserved = true, priority = true,
  valid_from = true, valid_to = true, services = true,
}

local function pack_bucket(b)
  -- cmsgpack drops nil values from tables; the contract has explicit nils (unit,
  -- valid_from, valid_to), so the map is built by hand: one cmsgpack.pack call over
  -- the key/value pairs (a nil argument packs as nil), then any other field the
  -- bucket carries, kept as is.
  local body = cmsgpack.pack(
    'id', b.id, 'kind', b.kind, 'unit', b.unit, 'amount', b.amount, 'reserved', b.reserved,
    'priority', b.priority, 'valid_from', b.valid_from, 'valid_to', b.valid_to,
    'services', b.services
  )
  local count = 9
  for name, v in pairs(b) do
    if type(name) == 'string' and not BUCKET_FIELDS[name] then
      body = body .. cmsgpack.pack(name, v)
      count = count + 1
    end
  end
  return map_header(count) .. body
end
