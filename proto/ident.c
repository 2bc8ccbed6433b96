/* Device identity validation (see ident.h for the rules). */
#include "ident.h"

bool
ident_serial_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > IDENT_SERIAL_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_'))
			return false;
	}
	return true;
}

bool
ident_text_valid(const char *s, size_t len, size_t max)
{
	size_t i;

	if (len == 0 || len > max)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}
