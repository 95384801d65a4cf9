/*
 * chat.c — chat templates of the supported families, written out in C
 * instead of evaluated by a Jinja engine. The style is picked from markers in
 * the model's own template (or the architecture); the few template-specific
 * details that change the text — ChatML default system prompts (SmolLM2,
 * Qwen2.5), Llama-3.1's date header — are read from the template string.
 */
#include "model/tokenizer.h"

#include <ctype.h>
#include <string.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    size_t need;
    if (!mlxn_add_ok(b->n, n + 1, &need)) { b->oom = true; return; }
    if (need > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < need) nc *= 2;
        char *q = mlxn_realloc(b->p, nc);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_put(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* Jinja's trim / str.strip(): drop leading and trailing whitespace. */
static void sb_put_trim(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    sb_putn(b, s, n);
}

mlxn_status mlxn_chat_detect(const char *tmpl, const char *arch, mlxn_chat_style *style) {
    if (!style) return mlxn_err(MLXN_ERR_INVALID_ARG, "chat_detect: style is NULL");
    if (tmpl && tmpl[0]) {
        if (strstr(tmpl, "<|im_start|>")) { *style = MLXN_CHAT_CHATML; return MLXN_OK; }
        if (strstr(tmpl, "<|start_header_id|>")) { *style = MLXN_CHAT_LLAMA3; return MLXN_OK; }
        if (strstr(tmpl, "[INST]")) {
            *style = strstr(tmpl, "<<SYS>>") ? MLXN_CHAT_LLAMA2 : MLXN_CHAT_MISTRAL;
            return MLXN_OK;
        }
    }
    if (arch) {
        if (strncmp(arch, "qwen", 4) == 0 || strcmp(arch, "smollm") == 0) { *style = MLXN_CHAT_CHATML; return MLXN_OK; }
        if (strcmp(arch, "llama") == 0) { *style = MLXN_CHAT_LLAMA3; return MLXN_OK; }
        if (strcmp(arch, "mistral") == 0) { *style = MLXN_CHAT_MISTRAL; return MLXN_OK; }
    }
    return mlxn_err(MLXN_ERR_UNSUPPORTED, "chat: no known chat format in the template%s%s",
                    arch ? " or for architecture " : "", arch ? arch : "");
}

/* ChatML default system prompt written literally in the template, as in
 * '<|im_start|>system\nYou are ...<|im_end|>\n'. The "\n" may be a real
 * newline or the two characters of a Jinja escape. Returns the prompt's
 * start and length, or false when the template has none (Qwen3 writes only
 * messages[0].content there). */
static bool chatml_default_system(const char *tmpl, const char **s, size_t *n) {
    static const char key[] = "<|im_start|>system";
    for (const char *p = tmpl ? strstr(tmpl, key) : NULL; p; p = strstr(p + 1, key)) {
        const char *q = p + sizeof key - 1;
        if (*q == '\n') q++;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        bool literal = true;
        for (const char *c = q; c < end; c++)
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}') literal = false;
        if (!literal) continue;
        *s = q;
        *n = (size_t)(end - q);
        return true;
    }
    return false;
}

/* Jinja escapes in a literal copied from the template source. */
static void sb_put_unescaped(sbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == 'n') { sb_put(b, "\n"); i++; }
        else sb_putn(b, s + i, 1);
    }
}

static void fmt_chatml(sbuf *b, const char *tmpl, const mlxn_chat_msg *m, size_t n, bool gen) {
    const char *ds;
    size_t dn;
    if (n > 0 && strcmp(m[0].role, "system") != 0 && chatml_default_system(tmpl, &ds, &dn)) {
        sb_put(b, "<|im_start|>system\n");
        sb_put_unescaped(b, ds, dn);
        sb_put(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sb_put(b, "<|im_start|>");
        sb_put(b, m[i].role);
        sb_put(b, "\n");
        sb_put(b, m[i].content);
        sb_put(b, "<|im_end|>\n");
    }
    if (gen) sb_put(b, "<|im_start|>assistant\n");
}

static void llama3_header(sbuf *b, const char *role) {
    sb_put(b, "<|start_header_id|>");
    sb_put(b, role);
    sb_put(b, "<|end_header_id|>\n\n");
}

static void fmt_llama3(sbuf *b, const char *tmpl, const mlxn_chat_msg *m, size_t n, bool gen) {
    sb_put(b, "<|begin_of_text|>");
    size_t first = 0;
    if (tmpl && strstr(tmpl, "Cutting Knowledge Date")) {
        /* Llama-3.1: a system block always, with the template's default date */
        llama3_header(b, "system");
        sb_put(b, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
        if (n && strcmp(m[0].role, "system") == 0) {
            sb_put_trim(b, m[0].content);
            first = 1;
        }
        sb_put(b, "<|eot_id|>");
    }
    for (size_t i = first; i < n; i++) {
        llama3_header(b, m[i].role);
        sb_put_trim(b, m[i].content);
        sb_put(b, "<|eot_id|>");
    }
    if (gen) llama3_header(b, "assistant");
}

/* Llama-2 chat: the system prompt goes inside the first [INST] in <<SYS>>. */
static void fmt_inst(sbuf *b, mlxn_chat_style style, const mlxn_chat_msg *m, size_t n) {
    const char *sys = NULL;
    size_t i = 0;
    if (n && strcmp(m[0].role, "system") == 0) {
        sys = m[0].content;
        i = 1;
    }
    if (style == MLXN_CHAT_MISTRAL) sb_put(b, "<s>");
    bool first = true;
    for (; i < n; i++) {
        if (strcmp(m[i].role, "user") == 0) {
            if (style == MLXN_CHAT_LLAMA2) sb_put(b, "<s>[INST] ");
            else sb_put(b, "[INST] ");
            if (first && sys) {
                if (style == MLXN_CHAT_LLAMA2) {
                    sbuf c = {0};
                    sb_put(&c, "<<SYS>>\n");
                    sb_put(&c, sys);
                    sb_put(&c, "\n<</SYS>>\n\n");
                    sb_put(&c, m[i].content);
                    if (c.oom) b->oom = true;
                    else sb_put_trim(b, c.p);
                    mlxn_free(c.p);
                } else {
                    sb_put(b, sys);
                    sb_put(b, "\n\n");
                    sb_put(b, m[i].content);
                }
            } else if (style == MLXN_CHAT_LLAMA2) {
                sb_put_trim(b, m[i].content);
            } else {
                sb_put(b, m[i].content);
            }
            sb_put(b, " [/INST]");
            first = false;
        } else if (strcmp(m[i].role, "assistant") == 0) {
            if (style == MLXN_CHAT_LLAMA2) {
                sb_put(b, " ");
                sb_put_trim(b, m[i].content);
                sb_put(b, " </s>");
            } else {
                sb_put(b, m[i].content);
                sb_put(b, "</s>");
            }
        }
    }
}

mlxn_status mlxn_chat_format(const char *tmpl, const char *arch, const mlxn_chat_msg *msgs, size_t n,
                             bool add_generation_prompt, char **out) {
    if (!out || (n && !msgs)) return mlxn_err(MLXN_ERR_INVALID_ARG, "chat_format: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return mlxn_err(MLXN_ERR_INVALID_ARG, "chat_format: message %zu has a NULL role or content", i);
    mlxn_chat_style style;
    mlxn_status st = mlxn_chat_detect(tmpl, arch, &style);
    if (st != MLXN_OK) return st;
    sbuf b = {0};
    sb_put(&b, "");
    switch (style) {
    case MLXN_CHAT_CHATML: fmt_chatml(&b, tmpl, msgs, n, add_generation_prompt); break;
    case MLXN_CHAT_LLAMA3: fmt_llama3(&b, tmpl, msgs, n, add_generation_prompt); break;
    case MLXN_CHAT_LLAMA2:
    case MLXN_CHAT_MISTRAL: fmt_inst(&b, style, msgs, n); break;
    default: break;
    }
    if (b.oom) {
        mlxn_free(b.p);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "chat_format: out of memory");
    }
    *out = b.p;
    return MLXN_OK;
}
