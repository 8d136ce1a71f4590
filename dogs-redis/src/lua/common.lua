-- Shared by every dogs script (prepended to each). ARGV[1] is the key prefix with its hash tag,
-- such as "{dogs}": every key of one prefix lives in one cluster slot.
--
-- Keys (P = prefix):
--   P:seq               counter of job ids (scheduling order)
--   P:job:<id>          hash: one job
--   P:jobs              zset of every job id (score = id)
--   P:byname:<name>     zset of the job ids of one name
--   P:scheduled:<name>  zset: pending jobs of one name whose run time was ahead, score = run
--                       time (ms)
--   P:ready:<name>      zset of due jobs of one name, all scores 0, members in claim order
--   P:leases:<name>     zset: leased jobs of one name, score = lease end (ms)
--   P:failed            zset: failed jobs, score = end of retention (ms)
--   P:failedby:<name>   zset: failed jobs of one name, score = id (scheduling order)
--   P:paused            set: paused job names (claims skip them)
--   P:limits            hash: job name -> most executions of it running at once
--   P:unique            hash: "<len>:<name><unique id>" -> id of the live job
--   P:recurrent         hash: name -> id of the recurrent job
--   P:exec:<id>         hash: one execution record (field json)
--   P:execs:<name>      zset of the execution ids of one name, score = start (ms)
--   P:exec_expiry       zset of execution ids, score = expiry (ms)
--   P:names             set: every job name that has (or had) jobs
--   P:minute:<ms>       hash: execution figures of the minute starting at <ms>: fields
--                       <status>:n, <status>:ms (run times added up), <status>:max; expires a
--                       day and an hour after it is written
--   P:layout            the key layout's version (2: per-name scheduled and leases sets; 3: and
--                       per-name failed sets; 4: and the set of names)
--   P:wake              pub/sub channel: a job became due, or was stored for later
local P = ARGV[1]
local calls = 0

local function call(...)
  calls = calls + 1
  return redis.call(...)
end

local function key(...)
  return P .. ':' .. table.concat({...}, ':')
end

-- The server's clock, in milliseconds.
local function now_ms()
  local t = call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function unique_field(name, unique)
  return string.len(name) .. ':' .. name .. unique
end

-- Members of a ready set sort as the claim order: not demoted first, then priority (higher
-- first), run time, id.
-- A record that cannot be read sorts as priority 0 at time 0; the claim then fails it.
local function ready_member(job, id)
  local run_at = math.max(0, tonumber(job.run_at) or 0)
  return (job.demoted == '1' and '1' or '0') .. ':'
    .. string.format('%010d', 2147483647 - (tonumber(job.priority) or 0)) .. ':'
    .. string.format('%015d', run_at) .. ':'
    .. string.format('%020d', tonumber(id))
end

local function load(id)
  local fields = call('HGETALL', key('job', id))
  if #fields == 0 then
    return nil
  end
  local job = {}
  for i = 1, #fields, 2 do
    job[fields[i]] = fields[i + 1]
  end
  return job
end

-- Takes a job out of the index its state names.
local function unindex(id, job)
  if job.state == 'scheduled' then
    call('ZREM', key('scheduled', job.name), id)
  elseif job.state == 'pending' then
    call('ZREM', key('ready', job.name), ready_member(job, id))
  elseif job.state == 'running' then
    call('ZREM', key('leases', job.name), id)
  elseif job.state == 'failed' then
    call('ZREM', key('failed'), id)
    call('ZREM', key('failedby', job.name), id)
  end
end

-- Puts a job into the index its state names; true when it is due now or later (idle workers
-- are to be woken).
local function index(id, job)
  if job.state == 'scheduled' then
    call('ZADD', key('scheduled', job.name), job.run_at, id)
    return true
  elseif job.state == 'pending' then
    call('ZADD', key('ready', job.name), 0, ready_member(job, id))
    return true
  elseif job.state == 'running' then
    call('ZADD', key('leases', job.name), job.locked_until, id)
  elseif job.state == 'failed' then
    call('ZADD', key('failed'), job.expires_at, id)
    call('ZADD', key('failedby', job.name), id, id)
  end
  return false
end

-- Why a job record cannot be worked on, or nil when it can: the fields every script reads.
local TEXT_FIELDS = { 'name', 'kind', 'params', 'state' }
local NUMBER_FIELDS = { 'priority', 'run_at', 'tries' }
local function unreadable(job)
  if not job then
    return 'no job record'
  end
  for i = 1, #TEXT_FIELDS do
    if type(job[TEXT_FIELDS[i]]) ~= 'string' then
      return 'no ' .. TEXT_FIELDS[i]
    end
  end
  for i = 1, #NUMBER_FIELDS do
    if not tonumber(job[NUMBER_FIELDS[i]]) then
      return NUMBER_FIELDS[i] .. ' is not a number'
    end
  end
  return nil
end

-- A value as stored: whole numbers in full (`tostring` would write 1e+14).
local function text(value)
  if type(value) == 'number' and value == math.floor(value) and math.abs(value) < 2^53 then
    return string.format('%d', value)
  end
  return tostring(value)
end

-- Writes the given fields of a job.
local function put(id, fields)
  local args = {}
  for field, value in pairs(fields) do
    args[#args + 1] = field
    args[#args + 1] = text(value)
  end
  if #args > 0 then
    call('HSET', key('job', id), unpack(args))
  end
end

local function pending_or_scheduled(run_at, now)
  if tonumber(run_at) <= now then
    return 'pending'
  end
  return 'scheduled'
end

local function free_unique(id, job)
  if job.uid then
    local field = unique_field(job.name, job.uid)
    if call('HGET', key('unique'), field) == id then
      call('HDEL', key('unique'), field)
    end
  end
end

local function delete_job(id, job)
  unindex(id, job)
  free_unique(id, job)
  call('DEL', key('job', id))
  call('ZREM', key('jobs'), id)
  call('ZREM', key('byname', job.name), id)
  if job.kind == 'recurrent' and call('HGET', key('recurrent'), job.name) == id then
    call('HDEL', key('recurrent'), job.name)
  end
end

local function wake()
  call(PUBLISH, key('wake'), '')
end

-- Tells workers that a running job was cancelled.
local function tell_cancelled()
  call(PUBLISH, key('wake'), 'cancelled')
end

-- Puts a failed job back to run now: tries reset, its error and lease forgotten. The caller
-- has checked that its unique identifier is free.
local function put_back(id, job, now)
  unindex(id, job)
  call('HDEL', key('job', id), 'token', 'locked_until', 'locked_by', 'last_error', 'expires_at',
    'progress')
  job.token = nil
  job.state = 'pending'
  job.run_at = math.min(tonumber(job.run_at), now)
  job.tries = 0
  job.demoted = '0'
  put(id, { state = 'pending', run_at = job.run_at, tries = 0, demoted = '0' })
  if job.uid then
    call('HSET', key('unique'), unique_field(job.name, job.uid), id)
  end
  index(id, job)
end

-- Whether a failed job was cancelled while it ran and its lease has not ended: its handler may
-- still be stopping. (Failing otherwise removes the lease end.)
local function still_stopping(job, now)
  return job.state == 'failed' and tonumber(job.locked_until) ~= nil
    and tonumber(job.locked_until) > now
end

-- Whether another live job holds a failed job's unique identifier.
local function unique_taken(id, job)
  if not job.uid then
    return false
  end
  local holder = call('HGET', key('unique'), unique_field(job.name, job.uid))
  return holder ~= false and holder ~= nil and holder ~= id
end

-- Removes up to `limit` execution records past their expiry; returns how many.
local function prune_executions(now, limit)
  local expired = call('ZRANGEBYSCORE', key('exec_expiry'), '-inf', now, 'LIMIT', 0, limit)
  for _, exec_id in ipairs(expired) do
    -- The name is in the record's JSON (records stored by older versions also have a field).
    local fields = call('HMGET', key('exec', exec_id), 'name', 'json')
    local name = fields[1]
    if not name and fields[2] then
      local ok, record = pcall(cjson.decode, fields[2])
      if ok and type(record) == 'table' and type(record.name) == 'string' then
        name = record.name
      end
    end
    if name then
      call('ZREM', key('execs', name), exec_id)
    end
    call('DEL', key('exec', exec_id))
    call('ZREM', key('exec_expiry'), exec_id)
  end
  return #expired
end

-- Moves up to `limit` entries of an earlier layout's global 'scheduled' and 'leases' sets (one
-- for every name) into the per-name sets, where this version reads them; the earlier layout's
-- processes may still be writing them during an upgrade. Returns how many were moved.
local function drain_legacy(limit)
  local moved = 0
  for _, set in ipairs({ 'scheduled', 'leases' }) do
    local old = key(set)
    local members = call('ZRANGE', old, 0, limit - 1, 'WITHSCORES')
    for i = 1, #members, 2 do
      local id, score = members[i], members[i + 1]
      local name = call('HGET', key('job', id), 'name')
      if name then
        call('ZADD', key(set, name), score, id)
      end
      call('ZREM', old, id)
      moved = moved + 1
    end
  end
  return moved
end

-- Execution figures gathered while a script runs, per minute and status, written once each by
-- `flush_figures` (run by `flush_later`).
local figures = {}
local FIGURES_TTL_MS = 25 * 3600 * 1000

local function add_figure(text)
  local ended, status, ms = string.match(text or '', '^(%d+) (%a+) (%d+)$')
  if not ended then
    return
  end
  local minute = math.floor(tonumber(ended) / 60000) * 60000
  local k = minute .. ':' .. status
  local f = figures[k]
  if not f then
    f = { minute = minute, status = status, n = 0, ms = 0, max = 0 }
    figures[k] = f
  end
  f.n = f.n + 1
  f.ms = f.ms + tonumber(ms)
  f.max = math.max(f.max, tonumber(ms))
end

-- With `redis.pcall`: figures are never a reason for a script that has written its outcomes to
-- fail.
local function flush_figures()
  local MAX = 9007199254740991
  for _, f in pairs(figures) do
    local k = key('minute', string.format('%d', f.minute))
    local n, ms, max = math.min(f.n, MAX), math.min(f.ms, MAX), math.min(f.max, MAX)
    calls = calls + 4
    redis.pcall('HINCRBY', k, f.status .. ':n', string.format('%d', n))
    redis.pcall('HINCRBY', k, f.status .. ':ms', string.format('%d', ms))
    local stored = redis.pcall('HGET', k, f.status .. ':max')
    if type(stored) ~= 'string' or max > (tonumber(stored) or -1) then
      redis.pcall('HSET', k, f.status .. ':max', string.format('%d', max))
    end
    redis.pcall('PEXPIRE', k, FIGURES_TTL_MS)
  end
  figures = {}
end

-- Sorted-set writes gathered while a script runs and sent at its end with `flush_later`: one
-- command per key however many jobs the script handles.
local later_zrem, later_zadd = {}, {}

local function later(t, k, ...)
  local list = t[k]
  if not list then
    list = {}
    t[k] = list
  end
  for _, v in ipairs({...}) do
    list[#list + 1] = v
  end
end

local function flush_later()
  -- In chunks, well below Lua's stack limit; an even size keeps ZADD's score-member pairs whole.
  local CHUNK = 2000
  for k, members in pairs(later_zrem) do
    for first = 1, #members, CHUNK do
      call('ZREM', k, unpack(members, first, math.min(#members, first + CHUNK - 1)))
    end
  end
  for k, pairs_ in pairs(later_zadd) do
    for first = 1, #pairs_, CHUNK do
      call('ZADD', k, unpack(pairs_, first, math.min(#pairs_, first + CHUNK - 1)))
    end
  end
  later_zrem, later_zadd = {}, {}
  flush_figures()
end

-- Stores an execution record once per execution id; its index entries are written by
-- `flush_later`. The caller also prunes expired records once per script (`prune_executions`),
-- so the records stored stay bounded by the retention.
-- `figures` is "<end (ms)> <status> <run time (ms)>", counted in the minute's figures.
local function record_execution(exec_id, name, json, started, expires, figures_text)
  if call('HSETNX', key('exec', exec_id), 'json', json) == 1 then
    add_figure(figures_text)
    later(later_zadd, key('execs', name), started, exec_id)
    later(later_zadd, key('exec_expiry'), expires, exec_id)
  end
end
