-- set_status.lua: set an account's status (active, suspended, barred, or closed when
-- an account is closed), only if the account exists.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH
-- ARGV: plain values (quota_engine/store/contract.py: SetStatusArgs):
--   1 new_status     the new status
-- Returns: a list (contract.py: SetStatusAnswer, decode_set_status):
--   1 status         "ok" or "no_account" (nothing written)
--   2 previous       "ok": the status before ('' when the hash had none);
--                    "no_account": ''

if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'no_account', '' }
end
local old = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return { 'ok', old }
