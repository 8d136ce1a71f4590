-- Reads a dashboard polls: a name's jobs in scheduling order, and execution records by the time
-- they ended, so a page and a chart read only what they show.
CREATE INDEX jobs_by_name ON "{schema}".jobs (name, id);
CREATE INDEX executions_by_end ON "{schema}".executions (ended_at);
