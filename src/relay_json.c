/*-------------------------------------------------------------------------
 *
 * relay_json.c
 *	  The JSON text of an event's value, as the relay sends it to Kafka.
 *
 * The relay sends an event's value as the text form of its jsonb, byte for
 * byte what jsonb's output function writes (JsonbToCString: ", " between
 * elements, ": " after a key, strings escaped as JSON requires, numbers as
 * numeric prints them).  That function goes through the jsonb iterator,
 * which copies every string before escaping it one character at a time;
 * here the stored containers are read in place (their layout is described
 * in utils/jsonb.h and is the on-disk format, the same on every major) and
 * strings are copied in runs between the characters that need escaping,
 * found eight bytes at a time.
 * Builds with assertions check every value against JsonbToCString.
 *
 * The same walk measures: eb_json_length() is the text's exact length
 * without writing it, eb_json_length_bound() an upper bound that does not
 * look at the strings' bytes (six output bytes for each byte of a string,
 * the most escaping writes: \u001f).  publish() uses them to refuse an
 * event whose text would be too large for Kafka (publish.c).
 *
 * A value nested so deeply that walking it would come near the stack's
 * limit is written by JsonbToCString instead (never an error: the relay
 * must not stop at an event).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "relay_json.h"

typedef enum EbJsonMode
{
	EB_JSON_APPEND,				/* write the text to out */
	EB_JSON_LENGTH,				/* count its bytes */
	EB_JSON_BOUND				/* count, strings at their worst case */
} EbJsonMode;

typedef struct EbJsonWalk
{
	EbJsonMode	mode;
	StringInfo	out;
	uint64		len;
	bool		too_deep;
} EbJsonWalk;

static void eb_json_container(EbJsonWalk *w, const JsonbContainer *c);

static inline void
eb_json_put(EbJsonWalk *w, const char *s, int len)
{
	if (w->mode == EB_JSON_APPEND)
		appendBinaryStringInfo(w->out, s, len);
	else
		w->len += len;
}

/* the bytes JSON text escapes: control characters, '"' and '\' */
#define EB_JSON_NEEDS_ESCAPE(c) ((c) < 0x20 || (c) == '"' || (c) == '\\')

/*
 * Does any of the 8 bytes of w need escaping?  Exact for the word as a
 * whole: a byte below n turns on the high bit of its own byte in
 * (w - n * ONES) & ~w (a borrow can also mark a higher byte, but only
 * after a lower one already matched); '"' and '\' are found as zero bytes
 * of w XOR the byte repeated.
 */
#define EB_ONES UINT64CONST(0x0101010101010101)
#define EB_HIGHS UINT64CONST(0x8080808080808080)
#define EB_HAS_LESS(w, n) ((((w) - EB_ONES * (n)) & ~(w) & EB_HIGHS) != 0)
#define EB_HAS_ZERO(w) EB_HAS_LESS(w, 1)

static inline bool
eb_json_word_needs_escape(uint64 w)
{
	return EB_HAS_LESS(w, 0x20) ||
		EB_HAS_ZERO(w ^ (EB_ONES * '"')) ||
		EB_HAS_ZERO(w ^ (EB_ONES * '\\'));
}

/* Writes (or counts) a string of a jsonb as a JSON string. */
static void
eb_json_string(EbJsonWalk *w, const char *s, int len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	const unsigned char *run = p;
	StringInfo	out = w->out;

	if (w->mode == EB_JSON_BOUND)
	{
		w->len += (uint64) len * 6 + 2;
		return;
	}
	if (w->mode == EB_JSON_LENGTH)
	{
		uint64		n = (uint64) len + 2;

		for (; p < end; p++)
		{
			if (end - p >= 8)
			{
				uint64		word;

				memcpy(&word, p, sizeof(word));
				if (!eb_json_word_needs_escape(word))
				{
					p += 7;
					continue;
				}
			}
			if (!EB_JSON_NEEDS_ESCAPE(*p))
				continue;
			if (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' ||
				*p == '\n' || *p == '\r' || *p == '\t')
				n += 1;
			else
				n += 5;
		}
		w->len += n;
		return;
	}

	enlargeStringInfo(out, len + 2);
	out->data[out->len++] = '"';
	while (p < end)
	{
		char		esc[6];
		int			esclen = 2;

		/* skip 8 bytes at a time while none of them needs escaping */
		if (end - p >= 8)
		{
			uint64		word;

			memcpy(&word, p, sizeof(word));
			if (!eb_json_word_needs_escape(word))
			{
				p += 8;
				continue;
			}
		}
		if (likely(!EB_JSON_NEEDS_ESCAPE(*p)))
		{
			p++;
			continue;
		}
		if (p > run)
			appendBinaryStringInfo(out, (const char *) run, p - run);
		esc[0] = '\\';
		switch (*p)
		{
			case '"':
				esc[1] = '"';
				break;
			case '\\':
				esc[1] = '\\';
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			default:
				/* \u00XX, lower-case hexadecimal digits */
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = "0123456789abcdef"[*p >> 4];
				esc[5] = "0123456789abcdef"[*p & 0xF];
				esclen = 6;
				break;
		}
		appendBinaryStringInfo(out, esc, esclen);
		run = ++p;
	}
	if (p > run)
		appendBinaryStringInfo(out, (const char *) run, p - run);
	appendStringInfoCharMacro(out, '"');
}

/*
 * Writes (or counts) the child of a container whose JEntry is je and whose
 * data lies from off to end after base.
 */
static void
eb_json_child(EbJsonWalk *w, JEntry je, const char *base, uint32 off, uint32 end)
{
	switch (je & JENTRY_TYPEMASK)
	{
		case JENTRY_ISSTRING:
			eb_json_string(w, base + off, end - off);
			break;
		case JENTRY_ISNUMERIC:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	PointerGetDatum(base + INTALIGN(off))));

				eb_json_put(w, s, strlen(s));
				pfree(s);
			}
			break;
		case JENTRY_ISBOOL_TRUE:
			eb_json_put(w, "true", 4);
			break;
		case JENTRY_ISBOOL_FALSE:
			eb_json_put(w, "false", 5);
			break;
		case JENTRY_ISNULL:
			eb_json_put(w, "null", 4);
			break;
		case JENTRY_ISCONTAINER:
			eb_json_container(w, (const JsonbContainer *) (base + INTALIGN(off)));
			break;
		default:
			elog(ERROR, "unknown type of jsonb container entry: %x", je & JENTRY_TYPEMASK);
	}
}

/*
 * Writes (or counts) a container.  Its children's JEntries come first (an
 * object's keys, then its values in the same order), then their data in
 * the same order; a JEntry holds either the length of its child's data or,
 * every JB_OFFSET_STRIDE children, the offset of its end
 * (JBE_ADVANCE_OFFSET reads either).
 */
static void
eb_json_container(EbJsonWalk *w, const JsonbContainer *c)
{
	uint32		n = c->header & JB_CMASK;
	uint32		i;

	if (stack_is_too_deep())
	{
		w->too_deep = true;
		return;
	}

	if (c->header & JB_FOBJECT)
	{
		const char *base = (const char *) &c->children[n * 2];
		uint32		koff = 0;
		uint32		voff = 0;

		/* the values' data follows the keys' */
		for (i = 0; i < n; i++)
			JBE_ADVANCE_OFFSET(voff, c->children[i]);
		eb_json_put(w, "{", 1);
		for (i = 0; i < n && !w->too_deep; i++)
		{
			uint32		kend = koff;
			uint32		vend = voff;

			JBE_ADVANCE_OFFSET(kend, c->children[i]);
			JBE_ADVANCE_OFFSET(vend, c->children[n + i]);
			if (i > 0)
				eb_json_put(w, ", ", 2);
			eb_json_string(w, base + koff, kend - koff);
			eb_json_put(w, ": ", 2);
			eb_json_child(w, c->children[n + i], base, voff, vend);
			koff = kend;
			voff = vend;
		}
		eb_json_put(w, "}", 1);
	}
	else
	{
		const char *base = (const char *) &c->children[n];
		bool		scalar = (c->header & JB_FSCALAR) != 0;
		uint32		off = 0;

		/* a scalar at the top is a one-element array, written bare */
		if (!scalar)
			eb_json_put(w, "[", 1);
		for (i = 0; i < n && !w->too_deep; i++)
		{
			uint32		end = off;

			JBE_ADVANCE_OFFSET(end, c->children[i]);
			if (i > 0)
				eb_json_put(w, ", ", 2);
			eb_json_child(w, c->children[i], base, off, end);
			off = end;
		}
		if (!scalar)
			eb_json_put(w, "]", 1);
	}
}

/* Appends the JSON text of a jsonb value to out, as JsonbToCString writes it. */
void
eb_json_append(StringInfo out, Jsonb *jb)
{
	EbJsonWalk	w;
	int			start = out->len;

	w.mode = EB_JSON_APPEND;
	w.out = out;
	w.len = 0;
	w.too_deep = false;
	eb_json_container(&w, &jb->root);
	if (w.too_deep)
	{
		out->len = start;
		out->data[start] = '\0';
		appendStringInfoString(out, JsonbToCString(NULL, &jb->root, VARSIZE(jb)));
	}
#ifdef USE_ASSERT_CHECKING
	{
		char	   *expected = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		Assert(strlen(expected) == (size_t) (out->len - start) &&
			   memcmp(expected, out->data + start, out->len - start) == 0);
		Assert(eb_json_length(jb) == (uint64) (out->len - start));
		Assert(eb_json_length_bound(jb) >= (uint64) (out->len - start));
		pfree(expected);
	}
#endif
}

static uint64
eb_json_measure(Jsonb *jb, EbJsonMode mode)
{
	EbJsonWalk	w;

	w.mode = mode;
	w.out = NULL;
	w.len = 0;
	w.too_deep = false;
	eb_json_container(&w, &jb->root);
	if (w.too_deep)
	{
		char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		uint64		len = strlen(s);

		pfree(s);
		return len;
	}
	return w.len;
}

/* The length of the JSON text of a jsonb value, without writing it. */
uint64
eb_json_length(Jsonb *jb)
{
	return eb_json_measure(jb, EB_JSON_LENGTH);
}

/*
 * An upper bound of that length that does not read the strings' bytes
 * (numbers are printed to be counted: their text can be far longer than
 * what they take in storage, 1e100000 for one).
 */
uint64
eb_json_length_bound(Jsonb *jb)
{
	return eb_json_measure(jb, EB_JSON_BOUND);
}
