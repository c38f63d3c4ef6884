"""d2lzh's names that d2l_utils does not provide, with the chapter of the book that uses each.

d2l_utils covers one chapter (批量归一化) and the d2lzh names its code uses. A learner
who writes ``import d2l_utils as d2l`` and then ``d2l.train_ch3`` gets an AttributeError that
says the name is d2lzh's, which chapter needs it, and to ``import d2lzh as d2l`` there
(``d2l_utils.__getattr__`` reads this table). docs/d2lzh_names.md shows the same table; a test
keeps the two equal.
"""

__all__ = ['NOT_PROVIDED', 'not_provided_message']

# name -> 'chapter number, title' in the book (动手学深度学习, MXNet edition, d2lzh 1.0)
NOT_PROVIDED = {
    'data_iter': '3 深度学习基础',
    'linreg': '3 深度学习基础',
    'squared_loss': '3 深度学习基础',
    'sgd': '3 深度学习基础',
    'train_ch3': '3 深度学习基础',
    'semilogy': '3 深度学习基础',
    'corr2d': '5 卷积神经网络',
    'Residual': '5 卷积神经网络, section ResNet (the next one)',
    'load_data_jay_lyrics': '6 循环神经网络',
    'load_data_time_machine': '6 循环神经网络',
    'data_iter_random': '6 循环神经网络',
    'data_iter_consecutive': '6 循环神经网络',
    'to_onehot': '6 循环神经网络',
    'predict_rnn': '6 循环神经网络',
    'grad_clipping': '6 循环神经网络',
    'train_and_predict_rnn': '6 循环神经网络',
    'RNNModel': '6 循环神经网络',
    'predict_rnn_gluon': '6 循环神经网络',
    'train_and_predict_rnn_gluon': '6 循环神经网络',
    'train_2d': '7 优化算法',
    'show_trace_2d': '7 优化算法',
    'get_data_ch7': '7 优化算法',
    'train_ch7': '7 优化算法',
    'train_gluon_ch7': '7 优化算法',
    'Benchmark': '8 计算性能',
    'resnet18': '8 计算性能',
    'bbox_to_rect': '9 计算机视觉',
    'show_bboxes': '9 计算机视觉',
    'load_data_pikachu': '9 计算机视觉',
    'download_voc_pascal': '9 计算机视觉',
    'read_voc_images': '9 计算机视觉',
    'VOC_COLORMAP': '9 计算机视觉',
    'VOC_CLASSES': '9 计算机视觉',
    'voc_label_indices': '9 计算机视觉',
    'voc_rand_crop': '9 计算机视觉',
    'VOCSegDataset': '9 计算机视觉',
    'mkdir_if_not_exist': '9 计算机视觉',
    'count_tokens': '10 自然语言处理',
    'download_imdb': '10 自然语言处理',
    'read_imdb': '10 自然语言处理',
    'get_tokenized_imdb': '10 自然语言处理',
    'get_vocab_imdb': '10 自然语言处理',
    'preprocess_imdb': '10 自然语言处理',
    'predict_sentiment': '10 自然语言处理',
}


def not_provided_message(name):
    """The AttributeError text for a d2lzh name in ``NOT_PROVIDED``."""
    number, title = NOT_PROVIDED[name].split(' ', 1)
    return (f"module 'd2l_utils' has no attribute {name!r}: {name} is a name of the book's "
            f'package d2lzh, used in chapter {number} ({title}). d2l_utils provides the names '
            'that the batch normalization chapter uses (docs/d2lzh_names.md lists them all); '
            f"for chapter {number}'s code write `import d2lzh as d2l` (pip install d2lzh==1.0.0).")
