/* Portable compiler attributes for proto/: the code must build with any C99 compiler (MCU
 * toolchains included), so attributes collapse to nothing where they are not understood. */
#ifndef OTAGW_ATTR_H
#define OTAGW_ATTR_H

/* Marks a function whose result must not be ignored: dropping it loses an error or a length. */
#if defined(__GNUC__) || defined(__clang__)
#define PROTO_MUST_CHECK __attribute__((warn_unused_result))
#else
#define PROTO_MUST_CHECK
#endif

/* A compile-time check that works in C99 (no _Static_assert): a negative array size fails. */
#define PROTO_STATIC_ASSERT(cond, name) typedef char proto_static_assert_##name[(cond) ? 1 : -1]

#endif
