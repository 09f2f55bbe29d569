// POSIX robust, process-shared mutexes: the only locks in shared memory.
// When a holder dies, the next locker is told (kOwnerDied), owns the lock,
// must repair what the lock protects, then MarkConsistent. Unlocking without
// MarkConsistent would make the mutex unusable for good (ENOTRECOVERABLE);
// leaving it locked by dying during the repair simply hands the repair to the
// next locker.
#pragma once

#include <pthread.h>

namespace redhub::shm {

enum class LockResult { kLocked, kOwnerDied, kBusy };

void InitRobustMutex(pthread_mutex_t* mu);
// `what` names the lock in the message of the process-ending error (a mutex
// that is not recoverable, or an error that means memory corruption).
LockResult LockRobust(pthread_mutex_t* mu, const char* what, unsigned index);
LockResult TryLockRobust(pthread_mutex_t* mu, const char* what, unsigned index);
// As LockRobust, but gives up after `millis` (kBusy, on the monotonic clock).
LockResult TimedLockRobust(pthread_mutex_t* mu, const char* what, unsigned index, long millis);
// As LockRobust, for the workers: while it waits it reports progress every
// 100 ms (progress.h), so the master's watchdog kills a hung holder, not
// every process queued behind it. Every holder of these locks is a worker
// the watchdog covers (the master never blocks on one), so the wait ends.
LockResult LockRobustWaiting(pthread_mutex_t* mu, const char* what, unsigned index);
void MarkConsistent(pthread_mutex_t* mu);
void UnlockRobust(pthread_mutex_t* mu);

// Ends the process with a message on stderr: for states that only a bug or
// memory corruption can produce.
[[noreturn]] void Fatal(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace redhub::shm
