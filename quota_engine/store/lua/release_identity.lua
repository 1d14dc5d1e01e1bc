-- release_identity.lua: remove an identity from the identity index, but only if it
-- still points at the account that gives it up (never another account's identity).
--
-- KEYS (outside any account's slot: the identity index):
--   1 ocs:sub:<identity>               STRING account id
-- ARGV: plain values (quota_engine/store/contract.py: ReleaseIdentityArgs):
--   1 account        account id
-- Returns: an integer (contract.py: ReleaseIdentityAnswer, decode_release_identity):
--   released         1 when the key was deleted, 0 when it was absent or names
--                    another account

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
