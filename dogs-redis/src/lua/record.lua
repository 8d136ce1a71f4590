-- Stores an execution record; recording the same execution id again keeps one.
-- ARGV: prefix, execution id, job name, JSON, start (ms), expiry (ms), figures (as in
-- complete.lua).
local now = now_ms()
record_execution(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
flush_later()
prune_executions(now, 2)
return 1
