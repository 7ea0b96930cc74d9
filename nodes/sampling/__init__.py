"""The sampling path: the reflecting sampler, its slices and spans, the W2SD guider, roles and sides."""
