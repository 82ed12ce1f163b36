// -----------------------------------------------------------------------------
// plexus/core/thread_annotations.h
// -----------------------------------------------------------------------------
//
// Macros for clang's thread-safety analysis (-Wthread-safety), in the manner of
// absl/base/thread_annotations.h. They document which lock guards which member and which
// functions acquire or require a lock, and clang checks it at compile time. Under other
// compilers they expand to nothing.

#pragma once

#if defined(__clang__)
#define PLEXUS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PLEXUS_THREAD_ANNOTATION(x)
#endif

#define PLEXUS_CAPABILITY(x) PLEXUS_THREAD_ANNOTATION(capability(x))
#define PLEXUS_SCOPED_CAPABILITY PLEXUS_THREAD_ANNOTATION(scoped_lockable)
#define PLEXUS_GUARDED_BY(x) PLEXUS_THREAD_ANNOTATION(guarded_by(x))
#define PLEXUS_PT_GUARDED_BY(x) PLEXUS_THREAD_ANNOTATION(pt_guarded_by(x))
#define PLEXUS_ACQUIRED_BEFORE(...) PLEXUS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define PLEXUS_ACQUIRED_AFTER(...) PLEXUS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define PLEXUS_REQUIRES(...) PLEXUS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define PLEXUS_ACQUIRE(...) PLEXUS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define PLEXUS_RELEASE(...) PLEXUS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define PLEXUS_TRY_ACQUIRE(...) PLEXUS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define PLEXUS_EXCLUDES(...) PLEXUS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define PLEXUS_ASSERT_CAPABILITY(x) PLEXUS_THREAD_ANNOTATION(assert_capability(x))
#define PLEXUS_RETURN_CAPABILITY(x) PLEXUS_THREAD_ANNOTATION(lock_returned(x))
#define PLEXUS_NO_THREAD_SAFETY_ANALYSIS PLEXUS_THREAD_ANNOTATION(no_thread_safety_analysis)
