/*-------------------------------------------------------------------------
 *
 * trace.h
 *	  W3C trace context (traceparent, tracestate) carried by events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_TRACE_H
#define EB_TRACE_H

#include "utils/jsonb.h"

/* GUCs: eventbus.traceparent, eventbus.tracestate ("" = unset) */
extern char *eb_traceparent;
extern char *eb_tracestate;

extern void eb_trace_init(void);
extern const char *eb_traceparent_problem(const char *s, size_t len);
extern const char *eb_tracestate_problem(const char *s, size_t len);
extern Jsonb *eb_trace_headers(Jsonb *headers);

#endif							/* EB_TRACE_H */
