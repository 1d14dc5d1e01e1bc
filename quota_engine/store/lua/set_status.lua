-- set_status.lua: set an account's status (active, suspended, barred, or closed when
-- an account is closed), only if the account exists.
--
-- KEYS (all under the account's hash tag {A}):
--   1 ocs:acct:{A}                     account HASH
-- ARGV:
--   1 the new status
-- Returns: {status, previous}: status "ok" (previous = the status before, '' when the
--   hash had none) or "no_account" (previous '', nothing written).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'no_account', '' }
end
local old = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return { 'ok', old }
