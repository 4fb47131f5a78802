"""The Lua scripts behind every job state change. Each runs atomically in Redis, so the API (create,
cancel) and the workers (start, progress, finish) never race: a queued job cancelled by the API is never
started by a worker, and two identical sample requests get one job. jobs/store.py calls them.
"""

from __future__ import annotations

# Create a job; with a lock, first see whether an active job already owns it (then answer its id).
# KEYS: job, index, lock. ARGV: id, created, job key prefix, lock ttl, joinable states (csv),
# id the caller may replace, use lock (0/1), then field/value pairs of the new record.
CREATE = """
if ARGV[7] == '1' then
  local current = redis.call('GET', KEYS[3])
  if current and current ~= ARGV[6] then
    local state = redis.call('HGET', ARGV[3] .. current, 'state')
    if state and string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then
      return current
    end
  end
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return ARGV[1]
"""

# queued -> running with a new lease; a running job whose lease expired (its worker died and the
# broker redelivered the message first) is taken over. A job started max_attempts times already fails.
# KEYS: job, running set, lease. ARGV: now, worker, lease ms, id, token, max attempts, ttl.
START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'running' and redis.call('EXISTS', KEYS[3]) == 1 then return 'busy' end
if state ~= 'queued' and state ~= 'running' then return state end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[6]) then
  redis.call('HDEL', KEYS[1], 'eta_s')
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'updated', ARGV[1], 'message', 'failed',
             'error', 'gave up after ' .. attempts .. ' attempts: each time, its worker was lost mid-job ' ..
             '(killed, out of memory, host lost); last worker: ' .. (redis.call('HGET', KEYS[1], 'worker') or '?'))
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return 'exhausted'
end
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'updated', ARGV[1], 'heartbeat', ARGV[1],
           'worker', ARGV[2], 'lease', ARGV[5],
           'message', attempts > 0 and 'resumed on a new worker' or 'started')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[3])
if attempts > 0 then return 'resumed' end
return 'running'
"""

# The owner renews its lease (and re-creates it if it lapsed while nobody reclaimed the job).
# KEYS: job, lease. ARGV: token, lease ms, now.
RENEW = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[3])
return 1
"""

# A running job whose lease expired goes back to the queue (a cancel it was asked for is honoured;
# after max_attempts starts it fails). With ARGV[5] (a worker name) the lease is not checked: that
# worker knows its process running the job died. Returns what it did: 'requeued', 'failed', 'cancelled',
# or why not: 'alive', 'other' (another worker's), 'not_running' (finished, re-queued or unknown by now).
# KEYS: job, running set, lease. ARGV: now, max attempts, ttl, id, worker or ''.
RECLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then
  redis.call('SREM', KEYS[2], ARGV[4])
  return 'not_running'
end
local worker = redis.call('HGET', KEYS[1], 'worker') or '?'
if ARGV[5] ~= '' then
  if worker ~= ARGV[5] then return 'other' end
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  return 'alive'
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HDEL', KEYS[1], 'eta_s')  -- cancelled, failed or queued again: its estimate no longer holds
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1], 'updated', ARGV[1],
             'message', 'cancelled (its worker ' .. worker .. ' was lost while stopping)')
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'cancelled'
end
if attempts >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'updated', ARGV[1], 'message', 'failed',
             'error', 'gave up after ' .. attempts .. ' attempts: each time, its worker was lost mid-job ' ..
             '(killed, out of memory, host lost); last worker: ' .. worker)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'updated', ARGV[1],
           'message', 're-queued: its worker ' .. worker .. ' was lost (attempt ' .. attempts .. ' of ' ..
           ARGV[2] .. '); it continues from its last checkpoint')
return 'requeued'
"""

# queued -> cancelled at once; running -> flag that the worker polls between steps.
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1], 'updated', ARGV[1],
             'message', 'cancelled before it started')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated', ARGV[1],
             'message', 'cancel requested; stopping after the current step')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  return 'cancelling'
end
return state
"""

# Progress only lands on a running job held by this token (never resurrects an expired or finished
# record, never overwrites the record of a worker that took the job over). ARGV: token, fields.
PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: job, running set, lease. ARGV: ttl, id, token ('' = the API, which owns queued jobs), fields.
FINISH = """
if not redis.call('HGET', KEYS[1], 'state') then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 0
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[3] then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], 'eta_s')  -- a finished job has no time left: its last estimate goes
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


# Put back a record Redis lost, unless Redis has one (a live record is always newer than the volume's).
# A running job gets a lease under its old owner's token: if that process still runs it carries on,
# otherwise the lease lapses and the sweep re-queues the job. No new owner can start it before then.
# KEYS: job, index, running set, lease, lock. ARGV: id, created, state, seconds to live (finished
# jobs; 0 = none), lease token, lease ms, lock ttl (0 = no lock), then field/value pairs.
RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] == 'running' then
  redis.call('SADD', KEYS[3], ARGV[1])
  if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
end
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if tonumber(ARGV[7]) > 0 then redis.call('SET', KEYS[5], ARGV[1], 'NX', 'EX', ARGV[7]) end
return 1
"""


# A queued job whose broker message is gone (the workers' sweep looked in its queue and did not find
# it) is published again, at most max times; then it fails, saying why. Only a job queued since before
# the cutoff qualifies: one just created or re-queued may not be published yet, and claiming it bumps
# `updated`, so two sweeping workers never publish one job twice.
# KEYS: job. ARGV: now, cutoff, max times, ttl.
REPUBLISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 'not_queued' end
if tonumber(redis.call('HGET', KEYS[1], 'updated') or '0') > tonumber(ARGV[2]) then return 'recent' end
local times = tonumber(redis.call('HGET', KEYS[1], 'republished') or '0')
redis.call('HINCRBY', KEYS[1], 'rev', 1)
if times >= tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[1], 'eta_s')
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'updated', ARGV[1], 'message', 'failed',
             'error', 'its message was lost from the job queue ' .. (times + 1) .. ' times (published again ' ..
             times .. ' times); ask again, and see the broker (Redis) logs')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 'failed'
end
redis.call('HINCRBY', KEYS[1], 'republished', 1)
redis.call('HSET', KEYS[1], 'updated', ARGV[1],
           'message', 're-published: its message was lost from the job queue (' .. (times + 1) .. ' of ' ..
           ARGV[3] .. ')')
return 'republished'
"""

# Delete a lock only while it still names this job (a newer owner's lock is left alone).
# KEYS: lock. ARGV: job id.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
