package flags

import "context"

// Placeholder until the flags branch lands; removed at merge.

type Source interface {
	Stage(ctx context.Context) Stage
}

type static Stage

func (s static) Stage(context.Context) Stage { return Stage(s) }

func Static(s Stage) Source { return static(s) }

type userKey struct{}

func WithUser(ctx context.Context, key string, attrs map[string]any) context.Context {
	return context.WithValue(ctx, userKey{}, key)
}

func RoutingKey(ctx context.Context) string { s, _ := ctx.Value(userKey{}).(string); return s }
