#include "robust_mutex.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "progress.h"
#include "syserr.h"

namespace redhub::shm {

void Fatal(const char* format, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, format);
  vsnprintf(msg, sizeof(msg), format, ap);
  va_end(ap);
  log::Write(log::Level::kWarning, "Store fatal: %s", msg);
  abort();
}

void InitRobustMutex(pthread_mutex_t* mu) {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(mu, &attr);
  if (rc != 0)
    Fatal("pthread_mutex_init(PROCESS_SHARED, ROBUST) failed: %s", ErrnoText(rc).c_str());
  pthread_mutexattr_destroy(&attr);
}

static LockResult Classify(int rc, const char* call, const char* what, unsigned index) {
  switch (rc) {
    case 0:
      return LockResult::kLocked;
    case EOWNERDEAD:
      return LockResult::kOwnerDied;
    case EBUSY:
    case ETIMEDOUT:
      return LockResult::kBusy;
    case ENOTRECOVERABLE:
      Fatal(
          "%s(%s %u) failed: the mutex is not recoverable (a holder unlocked it without "
          "repairing after a death); the segment must be recreated",
          call, what, index);
    default:
      Fatal("%s(%s %u) failed: %s", call, what, index, ErrnoText(rc).c_str());
  }
}

LockResult LockRobust(pthread_mutex_t* mu, const char* what, unsigned index) {
  return Classify(pthread_mutex_lock(mu), "pthread_mutex_lock", what, index);
}

LockResult TryLockRobust(pthread_mutex_t* mu, const char* what, unsigned index) {
  return Classify(pthread_mutex_trylock(mu), "pthread_mutex_trylock", what, index);
}

LockResult TimedLockRobust(pthread_mutex_t* mu, const char* what, unsigned index, long millis) {
  // The monotonic clock: a wall clock stepped back must not turn one wait
  // into a long one with no progress shown.
  timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += millis / 1000;
  deadline.tv_nsec += (millis % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  return Classify(pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &deadline),
                  "pthread_mutex_clocklock", what, index);
}

LockResult LockRobustWaiting(pthread_mutex_t* mu, const char* what, unsigned index) {
  LockResult r = TryLockRobust(mu, what, index);
  while (r == LockResult::kBusy) {
    r = TimedLockRobust(mu, what, index, 100);
    if (r == LockResult::kBusy) ReportProgress();
  }
  return r;
}

void MarkConsistent(pthread_mutex_t* mu) {
  int rc = pthread_mutex_consistent(mu);
  if (rc != 0) Fatal("pthread_mutex_consistent failed: %s", ErrnoText(rc).c_str());
}

void UnlockRobust(pthread_mutex_t* mu) {
  int rc = pthread_mutex_unlock(mu);
  if (rc != 0) Fatal("pthread_mutex_unlock failed: %s", ErrnoText(rc).c_str());
}

}  // namespace redhub::shm
