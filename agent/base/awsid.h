/* AWS identifiers checked offline, by their form: the config refuses a
 * bad [aws] region or instance_id at load, and the AWS client says why
 * EC2 refused one it learned from IMDS. Pure: no I/O. */
#pragma once

#include "macro.h"

/* A region is letters-letters-digit ("us-east-1", "us-gov-west-1",
 * "cn-north-1"), an instance id "i-" and 8 or 17 lowercase hex digits. */
bool aws_region_is_valid(const char *s);
bool aws_instance_id_is_valid(const char *s);
#define AWS_INSTANCE_ID_FORM "i- followed by 8 or 17 lowercase hex digits, e.g. i-0123456789abcdef0"
