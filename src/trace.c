/*-------------------------------------------------------------------------
 *
 * trace.c
 *	  W3C trace context on publish: the traceparent and tracestate headers
 *	  of an event, or the settings eventbus.traceparent and
 *	  eventbus.tracestate (SET LOCAL in the producing transaction).
 *
 * An event that carries a "traceparent" header keeps its own trace context
 * (its "tracestate" header too, if any); the settings are not looked at.
 * An event without one gets the settings' values as headers "traceparent"
 * and "tracestate" when eventbus.traceparent is set.  Either way the values
 * are checked against the W3C Trace Context format and a malformed one is
 * an error: nothing malformed is stored, returned by poll or relayed.  A
 * "traceparent" header whose value is JSON null means "no trace context"
 * and keeps the settings out.
 *
 * The format (W3C Trace Context, level 1, with level 2's keys):
 *
 *	traceparent  version "-" trace-id "-" parent-id "-" flags
 *				 2, 32, 16 and 2 lowercase hexadecimal digits; version ff is
 *				 invalid; trace-id and parent-id are not all zeros; version
 *				 00 has exactly 55 characters; a later version has at least
 *				 55, and after the flags either nothing or "-" and more.
 *	tracestate	 up to 32 list members "key=value" separated by commas with
 *				 optional spaces or tabs around them (empty members are
 *				 allowed and not counted); keys unique; a key is a lowercase
 *				 letter or digit followed by up to 255 of [a-z0-9_*-/], or
 *				 tenant "@" system: a tenant of up to 241 such characters, a
 *				 system of a lowercase letter and up to 13 more; a value is
 *				 1 to 256 printable ASCII characters other than ',' and '=',
 *				 not ending in a space.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "trace.h"

#define EB_TRACEPARENT_LEN 55
#define EB_TRACESTATE_MAX_MEMBERS 32
#define EB_TRACESTATE_KEY_MAX 256
#define EB_TRACESTATE_TENANT_MAX 241
#define EB_TRACESTATE_SYSTEM_MAX 14
#define EB_TRACESTATE_VALUE_MAX 256

char	   *eb_traceparent = NULL;
char	   *eb_tracestate = NULL;

static bool
eb_is_lchex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* n lowercase hex digits at s; *allzero says whether they were all 0 */
static bool
eb_lchex(const char *s, int n, bool *allzero)
{
	int			i;

	*allzero = true;
	for (i = 0; i < n; i++)
	{
		if (!eb_is_lchex(s[i]))
			return false;
		if (s[i] != '0')
			*allzero = false;
	}
	return true;
}

/*
 * Why s (len bytes) is not a valid traceparent, as a sentence; NULL if it
 * is one.
 */
const char *
eb_traceparent_problem(const char *s, size_t len)
{
	bool		zero;

	if (len < 2 || !eb_lchex(s, 2, &zero))
		return "The version is not two lowercase hexadecimal digits.";
	if (s[0] == 'f' && s[1] == 'f')
		return "Version ff is invalid.";
	if (len < EB_TRACEPARENT_LEN)
		return "A traceparent has 55 characters (version 00) or more (later versions).";
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return "The version, trace-id, parent-id and flags are not separated by '-' at characters 3, 36 and 53.";
	if (!eb_lchex(s + 3, 32, &zero))
		return "The trace-id is not 32 lowercase hexadecimal digits.";
	if (zero)
		return "The trace-id is all zeros.";
	if (!eb_lchex(s + 36, 16, &zero))
		return "The parent-id is not 16 lowercase hexadecimal digits.";
	if (zero)
		return "The parent-id is all zeros.";
	if (!eb_lchex(s + 53, 2, &zero))
		return "The flags are not two lowercase hexadecimal digits.";
	if (s[0] == '0' && s[1] == '0')
	{
		if (len != EB_TRACEPARENT_LEN)
			return "A version 00 traceparent has exactly 55 characters.";
	}
	else if (len > EB_TRACEPARENT_LEN && s[EB_TRACEPARENT_LEN] != '-')
		return "In a traceparent of a version after 00, the flags are followed by '-' or nothing.";
	return NULL;
}

static bool
eb_is_keychar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '*' || c == '/';
}

/* Is s[0..len) a tracestate key? */
static bool
eb_tracestate_key_ok(const char *s, size_t len)
{
	const char *at = memchr(s, '@', len);
	size_t		i;

	if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	if (at == NULL)
	{
		if (len > EB_TRACESTATE_KEY_MAX)
			return false;
		for (i = 1; i < len; i++)
			if (!eb_is_keychar(s[i]))
				return false;
		return true;
	}
	else
	{
		size_t		tenant = at - s;
		size_t		system = len - tenant - 1;

		if (tenant > EB_TRACESTATE_TENANT_MAX || system < 1 ||
			system > EB_TRACESTATE_SYSTEM_MAX || !(at[1] >= 'a' && at[1] <= 'z'))
			return false;
		for (i = 1; i < len; i++)
			if (i != tenant && !eb_is_keychar(s[i]))
				return false;
		return true;
	}
}

/* Is s[0..len) a tracestate value? */
static bool
eb_tracestate_value_ok(const char *s, size_t len)
{
	size_t		i;

	if (len < 1 || len > EB_TRACESTATE_VALUE_MAX || s[len - 1] == ' ')
		return false;
	for (i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e || s[i] == ',' || s[i] == '=')
			return false;
	return true;
}

/*
 * Why s (len bytes) is not a valid tracestate, as a sentence (palloc'd);
 * NULL if it is one.
 */
const char *
eb_tracestate_problem(const char *s, size_t len)
{
	const char *keys[EB_TRACESTATE_MAX_MEMBERS];
	size_t		keylens[EB_TRACESTATE_MAX_MEMBERS];
	int			members = 0;
	size_t		pos = 0;

	while (pos <= len)
	{
		size_t		start,
					end,
					eq;
		const char *comma = memchr(s + pos, ',', len - pos);
		int			i;

		end = comma ? (size_t) (comma - s) : len;
		start = pos;
		pos = end + 1;
		/* optional whitespace around the member */
		while (start < end && (s[start] == ' ' || s[start] == '\t'))
			start++;
		while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
			end--;
		if (start == end)
			continue;			/* an empty member */
		if (members == EB_TRACESTATE_MAX_MEMBERS)
			return psprintf("A tracestate has at most %d list members.",
							EB_TRACESTATE_MAX_MEMBERS);
		for (eq = start; eq < end && s[eq] != '='; eq++)
			;
		if (eq == end)
			return psprintf("List member %d has no '='.", members + 1);
		if (!eb_tracestate_key_ok(s + start, eq - start))
			return psprintf("The key of list member %d is not a lowercase letter or digit followed by up to 255 of a-z, 0-9, '_', '-', '*', '/' (or tenant@system).",
							members + 1);
		if (!eb_tracestate_value_ok(s + eq + 1, end - eq - 1))
			return psprintf("The value of list member %d is not 1 to 256 printable ASCII characters other than ',' and '=' (not ending in a space).",
							members + 1);
		for (i = 0; i < members; i++)
			if (keylens[i] == eq - start && memcmp(keys[i], s + start, eq - start) == 0)
				return psprintf("Key \"%.*s\" appears more than once.",
								(int) (eq - start), s + start);
		keys[members] = s + start;
		keylens[members] = eq - start;
		members++;
	}
	return NULL;
}

static bool
eb_traceparent_check(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = eb_traceparent_problem(*newval, strlen(*newval));
	if (problem == NULL)
		return true;
	GUC_check_errdetail("%s", problem);
	GUC_check_errhint("A traceparent is version-traceid-parentid-flags in lowercase hexadecimal, for example 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; an empty string unsets it.");
	return false;
}

static bool
eb_tracestate_check(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = eb_tracestate_problem(*newval, strlen(*newval));
	if (problem == NULL)
		return true;
	GUC_check_errdetail("%s", problem);
	GUC_check_errhint("A tracestate is a comma-separated list of key=value members, for example congo=t61rcWkgMzE; an empty string unsets it.");
	return false;
}

/* Defines the settings; called from _PG_init(). */
void
eb_trace_init(void)
{
	DefineCustomStringVariable("eventbus.traceparent",
							   "W3C traceparent given to events published without a traceparent header (SET LOCAL in the producing transaction); empty: none.",
							   NULL,
							   &eb_traceparent,
							   "",
							   PGC_USERSET,
							   0,
							   eb_traceparent_check, NULL, NULL);

	DefineCustomStringVariable("eventbus.tracestate",
							   "W3C tracestate given, with eventbus.traceparent, to events published without a traceparent header; empty: none.",
							   NULL,
							   &eb_tracestate,
							   "",
							   PGC_USERSET,
							   0,
							   eb_tracestate_check, NULL, NULL);
}

/* The value to show in a message: clipped, valid in the encoding. */
static char *
eb_trace_shown(const char *s, int len)
{
	return pnstrdup(s, pg_mbcliplen(s, len, 100));
}

/*
 * Checks the trace context of an event's headers (NULL: none) and returns
 * the headers to store: the same ones, or, when they have no traceparent
 * and eventbus.traceparent is set, new ones with the settings added.
 * Errors (22023) on a malformed traceparent or tracestate.  The headers
 * have passed eb_check_headers(): an object of strings and nulls.
 */
Jsonb *
eb_trace_headers(Jsonb *headers)
{
	JsonbValue	parent;
	JsonbValue	state;
	bool		has_parent = false;
	bool		has_state = false;
	StringInfoData buf;
	Jsonb	   *added;

	if (headers != NULL)
	{
		has_parent = getKeyJsonValueFromContainer(&headers->root, "traceparent",
												  strlen("traceparent"), &parent) != NULL;
		has_state = getKeyJsonValueFromContainer(&headers->root, "tracestate",
												 strlen("tracestate"), &state) != NULL;
	}

	if (has_parent && parent.type == jbvString)
	{
		const char *problem = eb_traceparent_problem(parent.val.string.val,
													 parent.val.string.len);

		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid traceparent header \"%s\"",
							eb_trace_shown(parent.val.string.val, parent.val.string.len)),
					 errdetail("%s", problem),
					 errhint("A traceparent is version-traceid-parentid-flags in lowercase hexadecimal, for example 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.")));
	}
	if (has_state && state.type == jbvString)
	{
		const char *problem;

		if (!has_parent || parent.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tracestate header without a traceparent header"),
					 errdetail("A tracestate belongs to the traceparent it came with."),
					 errhint("Pass both headers, or neither and set eventbus.traceparent and eventbus.tracestate.")));
		problem = eb_tracestate_problem(state.val.string.val, state.val.string.len);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid tracestate header \"%s\"",
							eb_trace_shown(state.val.string.val, state.val.string.len)),
					 errdetail("%s", problem)));
	}

	/* the event's own trace context (or its explicit "none") wins */
	if (has_parent || eb_traceparent == NULL || eb_traceparent[0] == '\0')
		return headers;

	/* the settings' values, checked when they were set */
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"traceparent\": ");
	escape_json(&buf, eb_traceparent);
	if (eb_tracestate != NULL && eb_tracestate[0] != '\0')
	{
		appendStringInfoString(&buf, ", \"tracestate\": ");
		escape_json(&buf, eb_tracestate);
	}
	appendStringInfoChar(&buf, '}');
	added = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	pfree(buf.data);
	if (headers == NULL)
		return added;
	/* the event's headers, with the settings' values on top */
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(headers),
											  JsonbPGetDatum(added)));
}
