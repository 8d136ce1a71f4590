-- Ends a claimed job's execution, fenced by its lease token, and stores its execution record in
-- the same step. ARGV: prefix, id, token, completion, four completion arguments, then either ''
-- or an execution: id, job name, JSON, start (ms), expiry (ms).
-- Completions and their arguments:
--   remove
--   reschedule  run_at (ms, or ''), delay (ms), priority (or ''), reset tries ('1' or '0')
--   fail        error, retention (ms)
--   demote
--   release
-- Returns 1, or 0 when the token is not current (nothing changed, nothing recorded).
local now = now_ms()
local id, token, completion = ARGV[2], ARGV[3], ARGV[4]
local job = load(id)
if not job or job.token ~= token or (job.state ~= 'running' and job.state ~= 'pending') then
  return 0
end
unindex(id, job)
local due = false
if completion == 'remove' then
  delete_job(id, job)
else
  call('HDEL', key('job', id), 'token', 'locked_until', 'locked_by')
  job.token = nil
  if completion == 'reschedule' then
    local run_at = now + tonumber(ARGV[6])
    if ARGV[5] ~= '' then
      run_at = tonumber(ARGV[5])
    end
    job.run_at = run_at
    if ARGV[7] ~= '' then
      job.priority = ARGV[7]
    end
    if ARGV[8] == '1' then
      job.tries = 0
    end
    job.demoted = '0'
    job.state = pending_or_scheduled(run_at, now)
  elseif completion == 'fail' then
    job.state = 'failed'
    job.last_error = ARGV[5]
    job.expires_at = now + tonumber(ARGV[6])
    job.demoted = '0'
    free_unique(id, job)
  elseif completion == 'demote' then
    job.state = 'pending'
    job.demoted = '1'
    job.run_at = now
  elseif completion == 'release' then
    job.tries = math.max(0, tonumber(job.tries) - 1)
    job.state = pending_or_scheduled(job.run_at, now)
  end
  put(id, {
    run_at = job.run_at, priority = job.priority, tries = job.tries, demoted = job.demoted,
    state = job.state, last_error = job.last_error, expires_at = job.expires_at,
  })
  due = index(id, job)
end
if ARGV[9] ~= '' then
  record_execution(ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], now)
end
if due then
  wake()
end
return 1
