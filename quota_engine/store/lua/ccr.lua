-- ccr.lua: one session Credit-Control-Request (INITIAL, UPDATE or TERMINATE), all of
-- its services at once, atomically.
--
-- KEYS (all under the hash tag {P} of the account A's partition, quota_engine/store/keys.py):
--   1 ocs:acct:{P}:A                   account HASH (status, kind, credit_limit, currency)
--   2 ocs:acct:{P}:A:buckets           buckets HASH
--   3 ocs:acct:{P}:A:sess:<session-id>  session STRING (msgpack)
--   4 ocs:acct:{P}:A:sessions          ZSET session id -> deadline
--   5 ocs:acct:{P}:A:idem:<session-id>:<n>  stored result STRING
--   6 ocs:records:{P}                  STREAM of rated records
--   7 ocs:acct:{P}:A:usage:<period>    HASH service id -> units used in the bill period
--   8 ocs:open:{P}                     HASH the partition's open-session counters (open_counts.lua)
--
-- ARGV[1], a msgpack map (quota_engine/store/contract.py: CcrArgs, SessionService):
--   sid     session id
--   acct    account id
--   n       CC-Request-Number
--   type    "initial", "update" or "terminate"
--   ts      rating time (Unix s): Event-Timestamp within the tolerance of server
--           time, else server time; bucket validity and the records' times
--   now     server time (Unix s; rates nothing)
--   dl      the session's new deadline (Unix s)
--   ttl     seconds the result is kept for retransmissions (KEYS[5])
--   uttl    seconds the usage hash lives after its last write (KEYS[7])
--   peer    Origin-Host of the client that owns the session
--   ctx     Service-Context-Id
--   ids     the subscriber's identities (list)
--   w       [plan, bill cycle day, currency] the request was rated with (see below)
--   rc      the rating context the request was rated with (see below), a map:
--     d       destination (called party, SMS recipient)
--     v       visited MCC-MNC
--     a       APN
--   cf      usage sanity: a report is committed up to cf times the grant it was
--           made against (the rest is not charged; the record says capped_from), or
--   cfl     up to the units of this map for its unit if that is more:
--     octets  octets
--     seconds  seconds
--     events  events
--   rq      the rating context the request carried itself (absent: rc), a map:
--     d       destination
--     v       visited MCC-MNC
--     a       APN
--   s       the services, a list of maps:
--     k       key: rating group, "si<n>" or "-"
--     rg      Rating-Group
--     si      Service-Identifier
--     sv      service id (catalog)
--     unit    "octets", "seconds" or "events"
--     used    units used since the last report (cut to its unit's cap by the engine)
--     rep     units reported, when more than used (at most 2^53 - 1; absent: used)
--     ub      of used, the units committed at the stored price when the rate changed
--             inside the report (Tariff-Change-Usage, else the clock), the rest at p
--             (absent: no change; applied only when p is another price than the stored)
--     tc      with ub from the clock: the instant of the change (Unix s); ub applies
--             only to a grant priced before it (R.pt)
--     final   the service ends (reporting reason FINAL)
--     st      preset outcome ("no_tariff")
--     p       price, a map:
--       fi      first increment (units)
--       fc      first cost (micro-units)
--       ni      next increment (units)
--       nc      next cost (micro-units)
--       key     changes when the price does
--       m       the record's price metadata (msgpack map, kept opaque)
--     zr      zero-rated (with p)
--     ur      [from, until] usage range a tier price holds for (with p; until -1: no bound)
--     req     units wanted (absent: no new grant), rounded up here (see below)
--     vt      Validity-Time (with req)
--     ttc     Tariff-Time-Change, Unix s (with req; absent: no rate change in the grant)
--     thr     quota threshold, percent of the grant (with req)
--     qht     Quota-Holding-Time (with req)
--     fa      final unit action (with req)
--     ra      redirect address (with req)
--
-- Returns a msgpack map (contract.py: ChargeAnswer, decode_ccr):
--   o       "ok", "out_of_order", "unknown_session", "unknown_subscriber",
--           "service_denied" or "stale"
--   n       CC-Request-Number
--   dl      the session's deadline whenever it is alive after the call, else absent
--   rc      with "stale": the session's rating context, that the request must be
--           rated with (absent: the account was outdated, not the context)
--   cap     the reports cut by usage sanity: [[k, reported, committed], ...] (absent:
--           none)
--   s       one map per service of ARGV's, in their order:
--     rg      Rating-Group
--     si      Service-Identifier
--     o       outcome of the service
--     u       unit
--     g       units granted
--     vt      Validity-Time
--     ttc     Tariff-Time-Change (Unix s), with a grant that spans a rate change
--     thr     quota threshold (units)
--     qht     Quota-Holding-Time
--     fu      final unit: the grant is the last the balance affords
--     fa      final unit action (with fu)
--     ra      redirect address (with fu)
--     c       money committed for the reported usage
--
-- req is rounded up on the rating group's cumulative count (lib.lua grant_after: the
-- count ends on a whole increment), which only the session knows. w: when the plan,
-- bill cycle day or currency no longer hold, or a tier's usage range (ur) no longer
-- does (lib.lua rated_with_outdated), the answer is o = "stale", nothing is written,
-- and the engine rates the request again.
--
-- rc: the session keeps the rating context of its requests (S.rc): each value the
-- request carried (rq) replaces the stored one, the others stay. When rc is not that
-- merge (the engine rated with another node's or an outdated idea of the session), the
-- answer is o = "stale" with the merge as rc, nothing is written, and the engine rates
-- the request again with it.
--
-- Order of work: (1) idempotency: the result stored for (session, n) is returned as is,
-- except to a TERMINATE while the session is open (below); (2) order: n not newer than
-- the session's last (serial number arithmetic, RFC 1982, so numbers may wrap from
-- 2^32-1 to 0) -> out_of_order, unless TERMINATE: a TERMINATE closes an open session
-- whatever its number (a client that reused or wrapped its numbers can always close;
-- its records then carry the session's last number + 1, so their ids stay unique);
-- no session and not INITIAL -> unknown_session; rated with another context (rc)
-- -> stale; (3) account
-- (lib.lua open_account, the opening checks that event.lua and refund.lua share):
-- missing -> unknown_subscriber; rated with an outdated copy (w) -> stale; not active
-- on INITIAL -> service_denied with nothing
-- written; not active on UPDATE -> usage committed, reservations released, no new
-- grants, service_denied; not active on TERMINATE -> handled as a normal TERMINATE;
-- (4) per service: commit the used units at the stored price (lib.lua commit),
-- release the old reservation, then reserve the new grant (lib.lua reserve) at the
-- new price; a price change flushes the usage charged so far as an "interim" record;
-- (5) TERMINATE or a final service: records with cause "normal", the rating group
-- (or the session) is removed; (6) the partition's open-session counters (KEYS[8])
-- move from what the session held before to what it holds now (open_counts.lua);
-- (7) result stored under KEYS[5] for ttl seconds.
--
-- Invariants: nothing is written unless the whole request is processed; every money
-- debit is in exactly one record; a bucket's reserved is the sum of the open
-- reservations on it; a grant never exceeds what the free units and free money of
-- the account afford (for postpaid "main": amount - reserved + credit_limit).

-- @include lib.lua
-- @include open_counts.lua

local req = cmsgpack.unpack(ARGV[1])
local K_ACCT, K_BUCKETS, K_SESS, K_SESSIONS, K_IDEM, K_RECORDS, K_USAGE, K_OPEN =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

local terminating = req.type == 'terminate'
local raw = redis.call('GET', K_SESS)
local stored = stored_answer(K_IDEM)
if stored and not (terminating and raw) then
  return stored
end

local S = nil -- the session, when there is one
local counted = nil -- what the stored session added to the open-session counters

-- the answer of a request that changed nothing; a live session keeps its deadline,
-- which the answer carries for the engine's deadline index
local function answer(o, rc)
  return cmsgpack.pack({ o = o, n = req.n, dl = S and S.dl or nil, rc = rc, s = {} })
end

-- n is newer than last: 0 < (n - last) mod 2^32 < 2^31 (RFC 1982 serial numbers)
local function newer(n, last)
  local d = (n - last) % 4294967296
  return d > 0 and d < 2147483648
end

local RC_FIELDS = { 'd', 'v', 'a' }
local rc = req.rc or {}
local rn = req.n -- the request number of the records written
if raw then
  S = cmsgpack.unpack(raw)
  if S.cm == 1 then
    counted = open_counts(S)
  end
  if not newer(req.n, S.n) then
    if not terminating then
      return answer('out_of_order')
    end
    rn = S.n + 1
  end
  -- the context to rate with: what the request carried over what the session keeps
  local carried, kept, merged = req.rq or rc, S.rc, {}
  if type(kept) ~= 'table' then
    kept = {}
  end
  local same = true
  for _, f in ipairs(RC_FIELDS) do
    local v = carried[f]
    if v == nil then
      v = kept[f]
    end
    merged[f] = v
    if v ~= rc[f] then
      same = false
    end
  end
  if not same then
    return answer('stale', merged)
  end
  rc = merged
elseif req.type ~= 'initial' then
  return answer('unknown_session')
end

-- an account that is not active still ends its open sessions (see above)
local A, refused = open_account(K_ACCT, req, K_USAGE, S ~= nil and req.type ~= 'initial')
if refused then
  return answer(refused)
end
local active = A.status == 'active'

-- one clock: ts is the request's rating time, which decides bucket validity as it
-- decided the price's band and the bill period (quota_engine/charging/rating_clock.py)
local ts = req.ts
local B = load_buckets(K_BUCKETS)
if not S then
  S = {
    id = req.sid, acct = req.acct, peer = req.peer, ctx = req.ctx, ids = req.ids,
    n = req.n, t0 = ts, rgs = {},
  }
end
S.rc = rc
if type(S.rgs) ~= 'table' then
  S.rgs = {}
end

-- usage sanity: a report is committed up to req.cf times the grant it was made
-- against (R.g), or the unit's floor (req.cfl) if that is more (no grant: only the
-- unit's cap, which the engine applied); what was cut is noted in R.cx for the
-- record's capped_from, and in the answer (cap)
local cut_reports = {}
local floors = req.cfl or {}
local function sane_usage(R, sv, used)
  local g, cf = tonumber(R.g) or 0, tonumber(req.cf)
  if g > 0 and cf then
    local limit = math.max(g * cf, tonumber(floors[R.unit or '']) or 0)
    if used > limit then
      used = limit
    end
  end
  local reported = tonumber(sv.rep) or tonumber(sv.used) or 0
  if reported > used then
    R.cx = math.min((tonumber(R.cx) or 0) + (reported - used), MAX_AMOUNT)
    cut_reports[#cut_reports + 1] = { sv.k, reported, used }
  end
  return used
end

local usage = {}
local function note_usage(R, used)
  if used > 0 and R.sv then
    usage[R.sv] = (usage[R.sv] or 0) + used
  end
end

local out = {}
for _, sv in ipairs(req.s or {}) do
  local used = tonumber(sv.used) or 0
  local res = { rg = sv.rg, si = sv.si, u = sv.unit, o = 'ok', g = 0, c = 0 }
  local R = S.rgs[sv.k]
  if not R and used > 0 and sv.p then
    -- usage for a rating group holding no state (no grant was reserved): charged at
    -- the current price, from free units and money
    R = new_rg(sv, ts)
    S.rgs[sv.k] = R
  end
  local closing = terminating or sv.final
  local record_n = rn -- the number of this service's closing record
  if R then
    used = sane_usage(R, sv, used)
    -- a report crossing the threshold of the stored price's tier (R.ur): the units
    -- up to it at the stored price, the rest at the new price, rated at the period
    -- usage after the request (not for a service reported final in a CCR-U: its
    -- record could not take the next number)
    local head, ur = used, R.ur
    if sv.p and R.p.key ~= sv.p.key and ur and ur[2] >= 0 and not R.zr
        and (terminating or not closing) then
      local pu = A.pu or {}
      local before = pu[R.sv]
      if before == nil then
        before = tonumber(redis.call('HGET', K_USAGE, R.sv)) or 0
      end
      before = before + (usage[R.sv] or 0)
      head = math.min(used, math.max(0, ur[2] - before))
    end
    -- a report that spans a rate change (time band): the units before it at the
    -- stored price, the rest at the new one; the engine's clock split (tc) only for
    -- a grant priced before the change (R.pt: when the stored price was rated)
    local ub = tonumber(sv.ub)
    if ub and sv.p and R.p.key ~= sv.p.key and not R.zr and (terminating or not closing)
        and (sv.tc == nil or (tonumber(R.pt or R.t0) or 0) < sv.tc) then
      head = math.min(head, math.max(0, ub))
    end
    res.c = commit(B, A, R, head, ts)
    note_usage(R, head)
    if sv.p and (not closing or head < used) and R.p.key ~= sv.p.key then
      -- re-rated (time band, zone, tier or catalog changed): what was charged at the
      -- old price becomes a record of its own
      if R.used > 0 or R.chg > 0 then
        flush(S, R, 'interim', rn, ts, A.currency, K_RECORDS)
        if closing then
          record_n = rn + 1 -- the closing record after it takes the next number
        end
      end
      R.p, R.zr, R.ur = sv.p, sv.zr, sv.ur
    end
    if head < used then
      res.c = res.c + commit(B, A, R, used - head, ts)
      note_usage(R, used - head)
    end
    if sv.p then
      R.pt = ts -- the stored price is rated at ts (either kept or replaced above)
    end
  end
  if closing then
    if R then
      flush(S, R, 'normal', record_n, ts, A.currency, K_RECORDS)
      S.rgs[sv.k] = nil
    end
    if sv.st then
      res.o = sv.st
    elseif sv.zr then
      res.o = 'not_applicable'
    end
  elseif not active then
    res.o = 'service_denied'
  elseif sv.st then
    res.o = sv.st
  elseif sv.zr then
    res.o = 'not_applicable'
    if not R then
      S.rgs[sv.k] = new_rg(sv, ts)
    end
  elseif sv.req and sv.req > 0 and sv.p then
    local fresh = R == nil
    if fresh then
      R = new_rg(sv, ts)
    end
    local granted, capped = reserve(B, A, R, sv.req, ts)
    if granted > 0 then
      S.rgs[sv.k] = R
      res.g, res.fu, res.vt, res.qht, res.ttc = granted, capped, sv.vt, sv.qht, sv.ttc
      if sv.thr then
        res.thr = idiv(granted * sv.thr, 100)
      end
      if capped then
        res.fa, res.ra = sv.fa, sv.ra
      end
    else
      res.o = 'credit_limit_reached'
      if not fresh then
        S.rgs[sv.k] = R
      end
    end
  end
  out[#out + 1] = res
end

local open_after = nil -- this session's open counts after the call (nil: it ends)
if terminating then
  local rest = {}
  for k, R in pairs(S.rgs) do
    rest[#rest + 1] = k
  end
  table.sort(rest)
  for _, k in ipairs(rest) do
    local R = S.rgs[k]
    commit(B, A, R, 0, ts)
    flush(S, R, 'normal', rn, ts, A.currency, K_RECORDS)
  end
  redis.call('DEL', K_SESS)
  redis.call('ZREM', K_SESSIONS, req.sid)
else
  if newer(req.n, S.n) then
    S.n = req.n
  end
  S.t, S.dl, S.cm = ts, req.dl, 1
  redis.call('SET', K_SESS, cmsgpack.pack(S))
  redis.call('ZADD', K_SESSIONS, req.dl, req.sid)
  open_after = open_counts(S)
end
save_buckets(B)

local any_usage = false
for service, units in pairs(usage) do
  redis.call('HINCRBY', K_USAGE, service, units)
  any_usage = true
end
if any_usage and req.uttl then
  redis.call('EXPIRE', K_USAGE, req.uttl)
end

local o = 'ok'
if not active and not terminating then
  o = 'service_denied'
end
local result = { o = o, n = req.n, dl = (not terminating) and req.dl or nil, s = out }
local blob = remember_answer(K_IDEM, result, req.ttl)
-- the open-session counters last: Redis does not roll back a script that fails half
-- way, and nothing about money may depend on them
count_open(K_OPEN, counted, open_after)
if #cut_reports == 0 then
  return blob
end
-- the cut reports are told once: a retransmission gets the stored answer, without them
result.cap = cut_reports
return cmsgpack.pack(result)
