/* Redis Cluster's replies as they reach both clients: the bytes as an
 * error reply's text (redis_cluster_redirect_parse: MOVED/ASK/TRYAGAIN/
 * CLUSTERDOWN), and the same bytes as RESP through hiredis's reader, the
 * reply then read as CLUSTER SLOTS (redis_cluster_slot_owner for a slot
 * taken from the input, redis_cluster_slot_nodes); the key slot of the
 * bytes. A redirection read names a slot below 16384 and a port; nodes
 * are each named once, none without a host. */
#include <hiredis/hiredis.h>

#include "fuzz.h"
#include "rediscluster.h"
#include "redisreply.h"

static void redirect(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *s = fuzz_strndup(data, size);
        RedisClusterRedirect r;

        if (redis_cluster_redirect_parse(s, &r) < 0)
                return;
        if (r.verdict == REDIS_CLUSTER_MOVED || r.verdict == REDIS_CLUSTER_ASK) {
                FUZZ_CHECK(r.slot < REDIS_CLUSTER_SLOTS && r.port > 0);
                FUZZ_CHECK(!r.host || (*r.host && !strchr(r.host, ' ')));
        }
        redis_cluster_redirect_done(&r);
}

static void slots(const uint8_t *data, size_t size) {
        redisReader *reader = redisreply_reader_new();
        void *reply = NULL;
        RedisEndpoint *nodes = NULL;
        char *host = NULL;
        uint16_t port = 0;
        size_t n = 0;

        if (!reader)
                abort();
        if (redisReaderFeed(reader, (const char *) data, size) == REDIS_OK &&
            redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
                unsigned slot = size > 0 ? redis_cluster_keyslot((const char *) data, size) : 0;

                FUZZ_CHECK(slot < REDIS_CLUSTER_SLOTS);
                if (redis_cluster_slot_owner(reply, slot, &host, &port) == 0) {
                        FUZZ_CHECK(port > 0);
                        FUZZ_CHECK(!host || *host);
                        free(host);
                }
                if (redis_cluster_slot_nodes(reply, &nodes, &n) == 0) {
                        for (size_t i = 0; i < n; i++) {
                                FUZZ_CHECK(nodes[i].host && *nodes[i].host && nodes[i].port > 0);
                                for (size_t j = 0; j < i; j++)
                                        FUZZ_CHECK(nodes[i].port != nodes[j].port ||
                                                   !streq(nodes[i].host, nodes[j].host));
                        }
                        redis_cluster_nodes_free(nodes, n);
                }
                freeReplyObject(reply);
        }
        redisReaderFree(reader);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        redirect(data, size);
        slots(data, size);
        return 0;
}
