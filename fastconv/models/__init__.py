"""fastconv.models: torchvision-compatible architectures (same state-dict keys, shapes and
parameter counts) plus LeNet-5, CIFAR ResNets, a CNN-RNN, a 1-D CNN and a multi-task network.

    from fastconv.models import resnet18, get_model, load_state_dict_file
    m = resnet18(num_classes=10)
    m.load_state_dict(load_state_dict_file("resnet18.safetensors"))
"""
from .alexnet import AlexNet, alexnet
from .cnn_rnn import CNNRNN, cnn_rnn
from .conv1d import Conv1dClassifier, conv1d_classifier
from .densenet import DenseNet, densenet121, densenet161, densenet169, densenet201
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .inception import Inception3, InceptionOutputs, inception_v3
from .lenet import LeNet5, lenet5, lenet5_relu
from .multitask import MultiTaskNet, multitask, small_trunk
from .resnet import (BasicBlock, Bottleneck, CifarResNet, ResNet, resnet18, resnet20, resnet32, resnet34, resnet44,
                     resnet50, resnet56, resnet101, resnet110, resnet152, resnext50_32x4d, wide_resnet50_2)
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from .weights import (get_model, list_models, load_checkpoint, load_state_dict_file, save_checkpoint,
                      save_state_dict_file)

_load_all = True  # weights.list_models imports this name: importing the package registered every family

__all__ = [
    "AlexNet", "CNNRNN", "Conv1dClassifier", "DenseNet", "GoogLeNet", "GoogLeNetOutputs", "Inception3",
    "InceptionOutputs", "LeNet5", "MultiTaskNet", "ResNet", "CifarResNet", "BasicBlock", "Bottleneck", "VGG",
    "alexnet", "cnn_rnn", "conv1d_classifier", "densenet121", "densenet161", "densenet169", "densenet201",
    "googlenet", "inception_v3", "lenet5", "lenet5_relu", "multitask", "small_trunk",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "get_model", "list_models", "load_state_dict_file", "save_state_dict_file", "save_checkpoint", "load_checkpoint",
]
