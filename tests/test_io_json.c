/* test_io_json.c — config.json helpers over cJSON: typed getters with
 * defaults, type and range errors naming the key, parse errors with line
 * and column, the nesting and file-size limits; and mapfile basics. */
#include "test_io_common.h"

#include <unistd.h>

static void test_config(void) {
    cJSON *c = NULL;
    CHECK_OK(mlxn_json_parse_file(&c, "tests/data/io/config.json", 0));
    if (!c) return;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    CHECK_OK(mlxn_json_get_int(c, "hidden_size", -1, &i));
    CHECK(i == 64, "hidden_size %lld", (long long)i);
    CHECK_OK(mlxn_json_need_int(c, "num_key_value_heads", &i));
    CHECK(i == 2, "kv heads");
    CHECK_OK(mlxn_json_get_float(c, "rms_norm_eps", 0, &d));
    CHECK(d == 1e-5, "eps %g", d);
    CHECK_OK(mlxn_json_need_float(c, "rope_theta", &d));
    CHECK(d == 10000.0, "theta");
    CHECK_OK(mlxn_json_get_float(c, "hidden_size", 0, &d));
    CHECK(d == 64.0, "int as float");
    CHECK_OK(mlxn_json_get_bool(c, "tie_word_embeddings", false, &b));
    CHECK(b, "tie");
    CHECK_OK(mlxn_json_get_string(c, "model_type", NULL, &s));
    CHECK(s && strcmp(s, "llama") == 0, "model_type");
    CHECK_OK(mlxn_json_need_string(c, "torch_dtype", &s));
    CHECK(s && strcmp(s, "bfloat16") == 0, "torch_dtype");
    /* Defaults: absent and null. */
    CHECK_OK(mlxn_json_get_int(c, "sliding_window", 4096, &i));
    CHECK(i == 4096, "default int");
    CHECK_OK(mlxn_json_get_float(c, "rope_scaling", 1.5, &d));
    CHECK(d == 1.5, "null -> default");
    CHECK_OK(mlxn_json_get_string(c, "absent", "dflt", &s));
    CHECK(s && strcmp(s, "dflt") == 0, "default string");
    CHECK_OK(mlxn_json_get_bool(NULL, "x", true, &b));
    CHECK(b, "NULL object -> default");
    /* Errors name the key and the types. */
    CHECK_STATUS(mlxn_json_get_int(c, "model_type", 0, &i), MLXN_ERR_DTYPE);
    CHECK(msg_has("key 'model_type' is string, expected an integer"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_get_int(c, "rms_norm_eps", 0, &i), MLXN_ERR_RANGE);
    CHECK(msg_has("'rms_norm_eps'") && msg_has("not an integer"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_get_bool(c, "hidden_size", false, &b), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_json_get_string(c, "architectures", NULL, &s), MLXN_ERR_DTYPE);
    CHECK(msg_has("'architectures' is array, expected a string"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_need_int(c, "intermediate_size", &i), MLXN_ERR_NOT_FOUND);
    CHECK(msg_has("'intermediate_size'"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_need_float(c, "rope_scaling", &d), MLXN_ERR_NOT_FOUND);
    CHECK_STATUS(mlxn_json_need_string(c, "nope", &s), MLXN_ERR_NOT_FOUND);
    const cJSON *q = NULL;
    CHECK_OK(mlxn_json_get_object(c, "quantization", &q));
    CHECK_OK(mlxn_json_get_int(q, "bits", 0, &i));
    CHECK(i == 4, "quantization.bits");
    CHECK_OK(mlxn_json_get_bool(q, "model.embed_tokens", true, &b));
    CHECK(!b, "per-module override false");
    CHECK_STATUS(mlxn_json_get_object(c, "hidden_size", &q), MLXN_ERR_DTYPE);
    CHECK_OK(mlxn_json_get_object(c, "absent", &q));
    CHECK(q == NULL, "absent object");
    cJSON_Delete(c);
}

static void test_parse_errors(void) {
    cJSON *c = NULL;
    CHECK_STATUS(mlxn_json_parse(&c, "{\n  \"a\": 1,\n  \"b\": }", 19, "cfg"), MLXN_ERR_FORMAT);
    CHECK(msg_has("cfg: invalid JSON at line 3"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_parse(&c, "{} {}", 5, "cfg"), MLXN_ERR_FORMAT);
    CHECK(msg_has("trailing data") && msg_has("column 4"), "msg: %s", mlxn_last_error());
    CHECK_OK(mlxn_json_parse(&c, "{\"a\": [1, 2]}  \n", 16, NULL));
    cJSON_Delete(c);
    CHECK_STATUS(mlxn_json_parse(&c, "", 0, NULL), MLXN_ERR_FORMAT);
    /* Not NUL-terminated: only len bytes are read. */
    char buf[8] = {'{', '}', 'x', 'x', 'x', 'x', 'x', 'x'};
    CHECK_OK(mlxn_json_parse(&c, buf, 2, NULL));
    cJSON_Delete(c);
    /* Nesting: 64 levels parse, 65 do not. */
    char deep[200];
    for (int depth = 64; depth <= 65; depth++) {
        int k = 0;
        for (int j = 0; j < depth; j++) deep[k++] = '[';
        for (int j = 0; j < depth; j++) deep[k++] = ']';
        mlxn_status s = mlxn_json_parse(&c, deep, (size_t)k, "deep");
        CHECK((depth == 64) == (s == MLXN_OK), "depth %d -> %s", depth, mlxn_status_name(s));
        if (depth == 65) CHECK(msg_has("nesting deeper than 64 at line 1 column 65"), "msg: %s", mlxn_last_error());
        cJSON_Delete(c);
    }
    /* Brackets inside strings do not count. */
    const char *strs = "[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"\"]";
    CHECK_OK(mlxn_json_parse(&c, strs, strlen(strs), NULL));
    cJSON_Delete(c);
    /* Integers beyond 2^53 are not exact. */
    CHECK_OK(mlxn_json_parse(&c, "{\"n\": 1e300, \"m\": -3}", 21, NULL));
    int64_t i;
    CHECK_STATUS(mlxn_json_get_int(c, "n", 0, &i), MLXN_ERR_RANGE);
    CHECK_OK(mlxn_json_get_int(c, "m", 0, &i));
    CHECK(i == -3, "negative int");
    cJSON_Delete(c);
    /* File limits. */
    CHECK_STATUS(mlxn_json_parse_file(&c, "tests/data/io/config.json", 10), MLXN_ERR_RANGE);
    CHECK(msg_has("limit is 10"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_json_parse_file(&c, "tests/data/io/none.json", 0), MLXN_ERR_IO);
    CHECK(msg_has("none.json: cannot open: No such file"), "msg: %s", mlxn_last_error());
    CHECK(c == NULL, "out NULL on failure");
}

static void test_mapfile(void) {
    char path[] = "/tmp/mlxn_io_empty_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    mlxn_mapfile mf = {0};
    CHECK_OK(mlxn_mapfile_open(&mf, path));
    CHECK(mf.size == 0 && mf.data != NULL, "empty file maps to size 0");
    mlxn_safetensors *st = NULL;
    CHECK_STATUS(mlxn_safetensors_open(&st, &mf), MLXN_ERR_FORMAT);
    mlxn_gguf *g = NULL;
    CHECK_STATUS(mlxn_gguf_open(&g, &mf), MLXN_ERR_FORMAT);
    mlxn_mapfile_close(&mf);
    unlink(path);
    CHECK_OK(mlxn_mapfile_open(&mf, "tests/data/io/config.json"));
    CHECK(mf.size > 100 && mf.data[0] == '{' && strcmp(mf.path, "tests/data/io/config.json") == 0, "mapped");
    mlxn_mapfile_close(&mf);
    CHECK(mf.data == NULL && mf.size == 0, "closed");
    CHECK_STATUS(mlxn_mapfile_open(&mf, "/nonexistent/x"), MLXN_ERR_IO);
    CHECK(msg_has("/nonexistent/x: cannot open: No such file or directory"), "msg: %s", mlxn_last_error());
    mlxn_mapfile_close(NULL);
}

static mlxn_status open_close_json(void) {
    cJSON *c = NULL;
    mlxn_status s = mlxn_json_parse_file(&c, "tests/data/io/config.json", 0);
    cJSON_Delete(c);
    return s;
}

int main(void) {
    walk_alloc_failures("json parse_file", open_close_json, 10);
    test_config();
    test_parse_errors();
    test_mapfile();
    return test_summary("test_io_json");
}
