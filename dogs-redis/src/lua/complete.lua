-- Ends claimed jobs' executions, each fenced by its lease token, and stores each one's execution
-- record in the same step. ARGV: prefix, count, then per job 13 arguments: id, token,
-- completion, four completion arguments, then either six '' or an execution: id, job name,
-- JSON, start (ms), expiry (ms), figures ("<end (ms)> <status> <run time (ms)>").
-- Completions and their arguments:
--   remove
--   reschedule  run_at (ms, or ''), delay (ms), priority (or ''), reset tries ('1' or '0')
--   fail        error, retention (ms)
--   demote
--   release
--   snooze      run_at (ms, or ''), delay (ms)
-- Returns per job 1, 0 when its token is not current (nothing changed, nothing recorded), or -1
-- when its record cannot be read (nothing changed). Every entry is checked before anything is
-- written, so a record that cannot be read never leaves the batch half applied.
local now = now_ms()
local woke = false
local recorded = 0

local function complete_one(b, job)
  local id, token, completion = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local a1, a2, a3, a4 = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  if not job or job.token ~= token or (job.state ~= 'running' and job.state ~= 'pending') then
    return 0
  end
  if completion == 'remove' and job.state == 'running' then
    -- The usual end of an execution, in as few commands as it takes: the index removals are
    -- gathered for the whole batch.
    later(later_zrem, key('leases', job.name), id)
    free_unique(id, job)
    call('DEL', key('job', id))
    later(later_zrem, key('jobs'), id)
    later(later_zrem, key('byname', job.name), id)
    if job.kind == 'recurrent' and call('HGET', key('recurrent'), job.name) == id then
      call('HDEL', key('recurrent'), job.name)
    end
  elseif completion == 'remove' then
    delete_job(id, job)
  else
    unindex(id, job)
    if completion == 'fail' then
      call('HDEL', key('job', id), 'token', 'locked_until', 'locked_by')
    else
      -- Its progress was its execution's.
      call('HDEL', key('job', id), 'token', 'locked_until', 'locked_by', 'progress')
    end
    job.token = nil
    if completion == 'reschedule' then
      local run_at = now + tonumber(a2)
      if a1 ~= '' then
        run_at = tonumber(a1)
      end
      job.run_at = run_at
      if a3 ~= '' then
        job.priority = a3
      end
      if a4 == '1' then
        job.tries = 0
      end
      job.demoted = '0'
      job.state = pending_or_scheduled(run_at, now)
    elseif completion == 'fail' then
      job.state = 'failed'
      job.last_error = a1
      job.expires_at = now + tonumber(a2)
      job.demoted = '0'
      free_unique(id, job)
    elseif completion == 'demote' then
      job.state = 'pending'
      job.demoted = '1'
      job.run_at = now
    elseif completion == 'release' then
      job.tries = math.max(0, tonumber(job.tries) - 1)
      job.state = pending_or_scheduled(job.run_at, now)
    elseif completion == 'snooze' then
      local run_at = now + tonumber(a2)
      if a1 ~= '' then
        run_at = tonumber(a1)
      end
      job.run_at = run_at
      job.tries = math.max(0, tonumber(job.tries) - 1)
      job.demoted = '0'
      job.state = pending_or_scheduled(run_at, now)
    end
    put(id, {
      run_at = job.run_at, priority = job.priority, tries = job.tries, demoted = job.demoted,
      state = job.state, last_error = job.last_error, expires_at = job.expires_at,
    })
    if index(id, job) then
      woke = true
    end
  end
  if ARGV[b + 7] ~= '' then
    record_execution(ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12])
    recorded = recorded + 1
  end
  return 1
end

-- First, without writing: which entries hold a current token on a record that can be read.
local count = tonumber(ARGV[2])
local checked, jobs, seen, repeated = {}, {}, {}, {}
for i = 0, count - 1 do
  local b = 3 + i * 13
  local job = load(ARGV[b])
  if seen[ARGV[b]] then
    repeated[i] = true
  end
  seen[ARGV[b]] = true
  if not job or job.token ~= ARGV[b + 1] or (job.state ~= 'running' and job.state ~= 'pending') then
    checked[i] = 0
  elseif unreadable(job) then
    checked[i] = -1
  else
    checked[i] = 1
    -- Kept for the writes, without its params (none of them needs those, and a batch of
    -- large ones would all be held at once).
    job.params = nil
    jobs[i] = job
  end
end
-- Then the writes; a job named twice in the batch is read again, since the earlier entry may
-- have ended it.
local out = {}
for i = 0, count - 1 do
  if checked[i] == 1 then
    local job = jobs[i]
    if repeated[i] then
      job = load(ARGV[3 + i * 13])
    end
    out[#out + 1] = complete_one(3 + i * 13, job)
  else
    out[#out + 1] = checked[i]
  end
end
flush_later()
if recorded > 0 then
  -- Twice what was added, so expired records never pile up.
  prune_executions(now, 2 * recorded)
end
if woke then
  wake()
end
return out
