import torch

from treecrowns.core.style_mixing import mix_styles


def _statistics(features):
    return features.mean(dim=(2, 3)), features.std(dim=(2, 3), unbiased=False)


def test_a_fully_mixed_patch_keeps_its_content_and_takes_its_partners_statistics():
    torch.manual_seed(0)
    features = torch.randn(3, 4, 8, 8) * torch.tensor([1.0, 3.0, 0.5]).view(3, 1, 1, 1) + torch.arange(3.0).view(3, 1, 1, 1)
    partners = torch.tensor([2, 0, 1])
    mixed = mix_styles(features, torch.zeros(3), partners)
    mean, spread = _statistics(mixed)
    partner_mean, partner_spread = _statistics(features[partners])
    assert torch.allclose(mean, partner_mean, atol=1e-4)
    assert torch.allclose(spread, partner_spread, atol=1e-3)
    own_mean, own_spread = _statistics(features)
    content = (features - own_mean[..., None, None]) / own_spread[..., None, None]
    mixed_content = (mixed - mean[..., None, None]) / spread[..., None, None]
    assert torch.allclose(content, mixed_content, atol=1e-3), "the patch's own pattern survives"
    assert torch.allclose(mix_styles(features, torch.ones(3), partners), features, atol=1e-4), "weight 1 changes nothing"
